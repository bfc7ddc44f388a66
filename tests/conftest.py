"""Fixtures shared by every test package: the real registries, bases and images of
tests/helpers, and the isolation every build needs."""

import os
from collections.abc import Iterator

import pytest

from tests.helpers.base_fixture import python_base, python_base_image, slim_base, slim_base_image
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
    "slim_base",
    "slim_base_image",
    "tls_registry",
    "token_registry",
]


@pytest.fixture(autouse=True, scope="session")
def _no_builders_of_the_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Builders (`manyarch create --use`) of whoever runs the tests would change what
    registries count as insecure: every test, and every manyarch it starts, sees none."""
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    yield
    if saved is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = saved
