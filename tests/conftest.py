"""Fixtures shared by every test package: the real registries of tests/helpers."""

from tests.helpers.registry_server import (
    faulty,
    registry,
    tls_registry,
    token_registry,
)

__all__ = ["faulty", "registry", "tls_registry", "token_registry"]
