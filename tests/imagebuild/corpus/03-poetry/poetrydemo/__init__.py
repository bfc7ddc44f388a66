"""The code, copied after its dependencies are installed."""

import six


def where() -> str:
    return f"six {six.__version__}"
