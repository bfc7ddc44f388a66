"""Fixtures of the layout tests: an empty layout and a real two-platform image in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_image import Image, write_image

from manyarch.layout import Layout


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """An empty layout."""
    return Layout.open(tmp_path / "oci", create=True)


@pytest.fixture
def image(layout: Layout, tmp_path: Path) -> Image:
    """The two-platform image in ``layout``, not tagged yet."""
    return write_image(layout, tmp_path)
