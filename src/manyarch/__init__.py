"""manyarch: multi-platform container images for Python applications, without Docker."""

__version__ = "0.1.0"
