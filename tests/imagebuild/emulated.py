"""The emulated reference of an equivalence test: a Dockerfile built under QEMU, cached."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.oci.platform import Platform
from tests.helpers.base_fixture import PythonBase
from tests.helpers.isolation import isolate
from tests.imagebuild.build_helpers import Built, make_context, run_build


def emulated_reference(
    ctx: Path,
    base: PythonBase,
    files: Mapping[str, str | bytes],
    dockerfile: str,
    platforms: tuple[Platform, ...],
    *,
    cache: Path,
) -> Built:
    """``dockerfile`` (the text of ``ctx``'s) built under QEMU, kept between sessions like
    the test base, by every input.

    Every requirement and build backend is pinned, so the emulated tools' result
    only changes with the inputs; its store is kept whole, under ``cache``
    (:func:`reference_cache`). Only the first of ``platforms`` is kept.
    """
    import hashlib
    import json
    import shutil

    from manyarch.imagebuild.options import BuildResult
    from manyarch.layout import Layout
    from manyarch.oci.manifest import Descriptor

    h = hashlib.sha256(f"{dockerfile}\0{base.tag}".encode())
    h.update(Layout.open(base.layout).resolve(base.tag).digest.hex.encode())
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0" + (data if isinstance(data, bytes) else data.encode()))
    cached = cache / h.hexdigest()[:32]
    if (cached / "manifest.json").is_file():
        desc = Descriptor.from_json(json.loads((cached / "manifest.json").read_text()))
        return Built(BuildResult(Layout.open(cached / "store"), desc, (desc,)))
    built = run_build(ctx, base.ref, platforms, epoch=0)
    if not (cached / "manifest.json").is_file():  # not whole, or kept by no one yet
        shutil.rmtree(cached, ignore_errors=True)
    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")  # parallel sessions
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(built.store.path, tmp / "store", symlinks=True)
    (tmp / "manifest.json").write_text(json.dumps(built.manifest_desc(str(platforms[0])).to_json()))
    try:
        tmp.rename(cached)
    except OSError:  # another session kept the same result first
        shutil.rmtree(tmp, ignore_errors=True)
    return built


def reference_cache() -> Path:
    """Where emulated references are kept between sessions (beside the test bases)."""
    from tests.helpers.images import tests_cache_dir

    return tests_cache_dir("emulated")


@contextlib.contextmanager
def own_dirs(tmp: Path) -> Iterator[None]:
    """A module fixture's own store, data, cache and work directories under ``tmp`` (what
    ``isolated_build`` gives each test)."""
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp)
        yield


def native_and_emulated(
    tmp: Path, base: PythonBase, dockerfile: str, files: Mapping[str, str | bytes]
) -> tuple[Built, Built, NativePipInterceptor]:
    """``dockerfile`` with ``files`` built for linux/arm64 with native pip (in directories of
    its own under ``tmp``) and under QEMU (cached); the native build's interceptor."""
    arm64 = (Platform.parse("linux/arm64"),)
    cache = reference_cache()
    with own_dirs(tmp):
        ctx = make_context(tmp, dockerfile, files)
        native_pip = NativePipInterceptor(tmp / "cache" / "manyarch")
        native = run_build(ctx, base.ref, arm64, interceptors=[native_pip], epoch=0)
        return (
            native,
            emulated_reference(ctx, base, files, dockerfile, arm64, cache=cache),
            native_pip,
        )
