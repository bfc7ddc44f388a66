"""A foreign platform's ``RUN mkdir -p`` made on the host: the layer the emulated line gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.imagebuild.nativeshell import NativeMkdirInterceptor
from manyarch.oci.platform import Platform
from tests.helpers.tiny_base import EPOCH, TinyBase, tiny_base
from tests.imagebuild.build_helpers import Built, make_context, run_build

__all__ = ["tiny_base"]

ARM64 = (Platform.parse("linux/arm64"),)


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def _both(tmp: Path, base: TinyBase, text: str) -> tuple[Built, Built, NativeMkdirInterceptor]:
    ctx = make_context(tmp, f"ARG BASE\nFROM $BASE\n{text}")
    hook = NativeMkdirInterceptor()
    native = run_build(ctx, base.ref, ARM64, interceptors=[hook], epoch=EPOCH)
    emulated = run_build(ctx, base.ref, ARM64, epoch=EPOCH)
    return native, emulated, hook


def _same_layers(a: Built, b: Built) -> None:
    assert a.manifest("linux/arm64").layers == b.manifest("linux/arm64").layers


@pytest.mark.parametrize(
    "text",
    [
        # Django's static directory after COPY . (bench/corpus 03), relative to WORKDIR
        "WORKDIR /app\nCOPY Dockerfile /app/\nRUN mkdir -p static /app/media/uploads\n",
        # several lines joined, a directory that is there already, new parents
        "RUN mkdir -p /var/lib/x/y && mkdir --parents /tmp /srv/data\n",
    ],
)
def test_mkdir_p_is_native_and_the_emulated_layer(
    tmp_path: Path, tiny_base: TinyBase, text: str
) -> None:
    native, emulated, hook = _both(tmp_path, tiny_base, text)
    assert hook.native == 1
    assert any("native: mkdir -p" in line for line in native.output("linux/arm64"))
    _same_layers(native, emulated)


@pytest.mark.parametrize(
    "text",
    [
        "RUN mkdir /x\n",  # no -p: emulated
        "RUN mkdir -p /srv/x && echo hi\n",  # another command
        "RUN mkdir -m 700 -p /srv/x\n",  # an option
        "USER 1000\nRUN mkdir -p /tmp/x\n",  # a user's
        "RUN ln -s /etc /srv && mkdir -p /srv/x\n",  # not only mkdir
        "RUN --mount=type=tmpfs,target=/cache mkdir -p /cache/x\n",  # a mount
    ],
)
def test_other_lines_run_as_before(tmp_path: Path, tiny_base: TinyBase, text: str) -> None:
    native, emulated, hook = _both(tmp_path, tiny_base, text)
    assert hook.native == 0
    _same_layers(native, emulated)


def test_a_link_on_the_way_is_followed_by_the_emulated_mkdir(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    # COPY keeps the link; mkdir -p through it writes where it points: emulated
    text = "COPY d /srv/\nRUN mkdir -p /srv/link/x\n"
    ctx = make_context(tmp_path, f"ARG BASE\nFROM $BASE\n{text}")
    (ctx / "d").mkdir()
    (ctx / "d" / "link").symlink_to("/tmp")
    hook = NativeMkdirInterceptor()
    native = run_build(ctx, tiny_base.ref, ARM64, interceptors=[hook], epoch=EPOCH)
    emulated = run_build(ctx, tiny_base.ref, ARM64, epoch=EPOCH)
    assert hook.native == 0
    _same_layers(native, emulated)
    assert "tmp/x" in native.layer("linux/arm64", -1)
