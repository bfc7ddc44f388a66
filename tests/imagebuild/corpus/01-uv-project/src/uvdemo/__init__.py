"""The project uv syncs last, once its dependencies are in their own layer."""

import idna


def hello() -> str:
    return idna.encode("bücher.example").decode()
