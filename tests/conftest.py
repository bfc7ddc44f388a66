"""Fixtures shared by every test package: the real registries of tests/helpers."""

from tests.helpers.registry_server import (
    faulty,
    registry,
    tls_registry,
    token_registry,
)

__all__ = ["faulty", "registry", "tls_registry", "token_registry"]
from tests.helpers.base_fixture import python_base, python_base_image  # noqa: F401
from tests.helpers.demo_image import demo_image, demo_layout  # noqa: F401
