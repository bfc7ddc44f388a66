"""The demo image fixture: both platforms, pushed to the session registry."""

from __future__ import annotations

import pytest

from manyarch.oci import Index
from manyarch.oci.reference import Reference
from manyarch.registry import RegistryClient, RegistryOptions
from tests.helpers.demo_image import DemoImage


@pytest.mark.slow
def test_demo_index_has_amd64_and_arm64(demo_image: DemoImage) -> None:
    ref = Reference.parse(demo_image.ref)
    with RegistryClient(RegistryOptions(insecure=frozenset({ref.registry}))) as client:
        index = Index.parse(client.get_manifest(ref))
    assert sorted(str(p) for p in index.platforms()) == ["linux/amd64", "linux/arm64"]
