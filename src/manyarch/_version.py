"""The version of manyarch (kept apart so that every module can read it cheaply)."""

__version__ = "0.1.0"
