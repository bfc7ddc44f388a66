"""Fixtures shared by every test package: the real registries, bases and images of
tests/helpers, and the isolation every build needs."""

from tests.helpers.base_fixture import python_base, python_base_image
from tests.helpers.demo_image import demo_image, demo_layout
from tests.helpers.isolation import isolated_build
from tests.helpers.registry_server import (
    faulty,
    registry,
    tls_registry,
    token_registry,
)

__all__ = [
    "demo_image",
    "demo_layout",
    "faulty",
    "isolated_build",
    "python_base",
    "python_base_image",
    "registry",
    "tls_registry",
    "token_registry",
]
