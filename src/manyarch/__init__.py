"""manyarch: multi-platform container images for Python applications, without Docker."""

from manyarch._version import __version__

__all__ = ["__version__"]
