"""The python bases the build tests start FROM, built once and cached across sessions.

``python_base`` builds (or takes from a cache under ``$XDG_CACHE_HOME/manyarch-tests``,
else ``/var/tmp/manyarch-tests``, keyed on every input) the ``--preset python``
base for linux/amd64 and linux/arm64 with a fixed SOURCE_DATE_EPOCH, and copies it
into a fresh OCI layout. Cold: ~30-60 s; cached: ~1 s.

``slim_base`` is the same for ``--preset python-slim`` (bookworm only: trixie's is
measured by ``bench/slim.sh``). Cold: ~2 min, the arm64 maintainer scripts
under QEMU; cached: ~1 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.baseimage.image import BaseImage, build_base
from manyarch.baseimage.options import BaseOptions
from manyarch.images import LayoutSink, LayoutSource, put_index
from manyarch.layout import Layout
from manyarch.oci.manifest import Descriptor
from manyarch.oci.platform import Platform
from tests.helpers.images import LayoutImage, tests_cache_dir

BASE_PLATFORMS = (Platform.parse("linux/amd64"), Platform.parse("linux/arm64"))
BASE_EPOCH = 1700000000
BASE_TAG = "python-3.11-bookworm"
SLIM_TAG = "python-3.11-slim-bookworm"


class PythonBase(LayoutImage):
    """An OCI layout holding the python base index under ``tag``."""


def base_cache_dir() -> Path:
    """Where test base images are cached between sessions."""
    return tests_cache_dir("base")


def python_base_options(**overrides: object) -> BaseOptions:
    """The options the ``python_base`` fixture builds with."""
    kw: dict[str, object] = {
        "platforms": BASE_PLATFORMS,
        "preset": "python",
        "epoch": BASE_EPOCH,
        "cache_dir": base_cache_dir(),
    }
    kw.update(overrides)
    return BaseOptions(**kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def python_base_image() -> BaseImage:
    """The built python base (per-platform images in the test cache)."""
    return build_base(python_base_options())


@pytest.fixture(scope="session")
def python_base(
    python_base_image: BaseImage, tmp_path_factory: pytest.TempPathFactory
) -> PythonBase:
    """``(layout_path, tag)`` of the python base for linux/amd64 and linux/arm64."""
    path = tmp_path_factory.mktemp("python-base") / "layout"
    save_base(python_base_image, Layout.open(path, create=True), BASE_TAG)
    return PythonBase(path, BASE_TAG)


@pytest.fixture(scope="session")
def slim_base_image() -> BaseImage:
    """The built python-slim base (bookworm; per-platform images in the test cache)."""
    return build_base(python_base_options(preset="python-slim"))


@pytest.fixture(scope="session")
def slim_base(slim_base_image: BaseImage, tmp_path_factory: pytest.TempPathFactory) -> PythonBase:
    """``(layout_path, tag)`` of the python-slim base for linux/amd64 and linux/arm64."""
    path = tmp_path_factory.mktemp("slim-base") / "layout"
    save_base(slim_base_image, Layout.open(path, create=True), SLIM_TAG)
    return PythonBase(path, SLIM_TAG)


def save_base(image: BaseImage, dest: Layout, tag: str | None) -> Descriptor:
    """Copy a base (its per-platform cache entries, one index over them) into ``dest``."""
    entries = [(LayoutSource(i.layout(), str(i.manifest.digest)), i.manifest) for i in image.images]
    return put_index(LayoutSink(dest), entries, image.index_document(), tag)
