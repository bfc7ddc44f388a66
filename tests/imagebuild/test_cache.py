"""The build cache: keys, hits after an app-only edit, export/import, LRU prune."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from manyarch.errors import InvalidArgument, InvalidDocument
from manyarch.imagebuild.cache import (
    BuildCache,
    CacheEntry,
    CacheSpec,
    build_hooks,
    entries,
    parse_size,
    prune,
)
from manyarch.imagebuild.options import BuildOptions
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import Descriptor, Manifest
from manyarch.oci.platform import Platform
from manyarch.oci.reference import Reference
from manyarch.registry import RegistryClient, RegistryOptions
from manyarch.store import open_store
from tests.helpers.base_fixture import PythonBase
from tests.helpers.registry_server import RegistryServer
from tests.imagebuild.build_helpers import Built, make_context, run_build

AMD64 = (Platform.parse("linux/amd64"),)

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
WORKDIR /srv
COPY requirements.txt .
RUN echo "installed from $(cat requirements.txt)" > /srv/installed
COPY app/ app/
RUN ls app > /srv/listing
"""


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def cached_build(ctx: Path, base: str, **hook_args: object) -> tuple[Built, BuildCache]:
    hooks = build_hooks(open_store(), native_pip=False, **hook_args)  # type: ignore[arg-type]
    built = run_build(
        ctx, base, AMD64, interceptors=hooks.interceptors, observers=hooks.observers, epoch=0
    )
    hooks.finish()
    assert hooks.cache is not None
    return built, hooks.cache


def statuses(built: Built) -> dict[str, str]:
    return {e.text: e.status for e in built.events if e.status in ("done", "cached")}


@pytest.mark.slow
def test_app_edit_reruns_only_that_copy_and_what_follows(
    tmp_path: Path, python_base: PythonBase
) -> None:
    ctx = make_context(
        tmp_path,
        DOCKERFILE,
        {
            "requirements.txt": "click\n",
            "app/main.py": "print(1)\n",
            ".dockerignore": "app/*.log\n",
        },
    )
    first, _ = cached_build(ctx, python_base.ref)
    assert "cached" not in statuses(first).values()

    (ctx / "app" / "debug.log").write_text("ignored by .dockerignore\n")
    again, cache = cached_build(ctx, python_base.ref)
    assert set(statuses(again).values()) >= {"cached"}
    assert (cache.hits, cache.misses) == (4, 0)
    assert again.result.descriptor == first.result.descriptor  # same bytes, same digest

    (ctx / "app" / "main.py").write_text("print(2)\n")
    edited, cache = cached_build(ctx, python_base.ref)
    st = statuses(edited)
    assert st["COPY requirements.txt ."] == "cached"
    assert st['RUN echo "installed from $(cat requirements.txt)" > /srv/installed'] == "cached"
    assert st["COPY app/ app/"] == "done"
    assert st["RUN ls app > /srv/listing"] == "done"
    old, new = first.manifest("linux/amd64").layers, edited.manifest("linux/amd64").layers
    assert old[:-2] == new[:-2] and old[-2] != new[-2]

    no_cache, cache = cached_build(ctx, python_base.ref, no_cache=True)
    assert "cached" not in statuses(no_cache).values() and cache.hits == 0
    assert no_cache.result.descriptor == edited.result.descriptor  # reproducible with an epoch


@pytest.mark.slow
def test_cache_to_and_from_a_directory(
    tmp_path: Path, python_base: PythonBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, {"requirements.txt": "x\n", "app/a": "a\n"})
    exported = tmp_path / "exported"
    first, _ = cached_build(ctx, python_base.ref, cache_to=f"type=local,dest={exported}")
    assert (exported / "oci-layout").exists() and list((exported / "entries").glob("*/*.json"))

    # another machine: empty local cache and store, only the exported directory
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store2"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    second, cache = cached_build(ctx, python_base.ref, cache_from=[f"type=local,src={exported}"])
    assert cache.hits == 4
    assert second.result.descriptor == first.result.descriptor


@pytest.mark.slow
def test_cache_to_and_from_a_registry(
    tmp_path: Path,
    python_base: PythonBase,
    registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, {"requirements.txt": "y\n", "app/a": "a\n"})
    ref = f"{registry.host}/app:buildcache"
    client = RegistryClient(RegistryOptions())  # loopback speaks plain http

    # the first build of a pipeline: nothing to import yet, said, not fatal
    hooks = build_hooks(
        open_store(),
        native_pip=False,
        cache_from=[f"type=registry,ref={ref}"],
        cache_to=f"type=registry,ref={ref},mode=max",
        client=client,
    )
    assert hooks.warnings == [f"no build cache at {ref} yet: nothing imported from it"]
    first = run_build(
        ctx,
        python_base.ref,
        AMD64,
        interceptors=hooks.interceptors,
        observers=hooks.observers,
        epoch=0,
    )
    hooks.finish()
    assert hooks.temp_dirs == []  # its directories are gone
    # skopeo, a peer, reads what was pushed: one artifact whose layers are the cached ones
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
    ).stdout
    manifest = json.loads(raw)
    assert manifest["config"]["mediaType"] == "application/vnd.manyarch.buildcache.v1+json"
    built_layers = {d.digest for d in first.manifest("linux/amd64").layers}
    assert {Digest.parse(d["digest"]) for d in manifest["layers"]} <= built_layers
    assert len(manifest["layers"]) == 4

    # another machine: empty local cache and store, only the registry
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store2"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    second, cache = cached_build(
        ctx, python_base.ref, cache_from=[f"type=registry,ref={ref}"], client=client
    )
    assert (cache.hits, cache.misses) == (4, 0)
    assert second.result.descriptor == first.result.descriptor
    # an image is read for its inline cache (BuildKit's --cache-from an image): without one,
    # nothing is imported and the build says so
    image = Reference.parse(f"{registry.host}/app:latest")
    config = Document(b"{}", mt.OCI_CONFIG)
    client.push_blob(image, Descriptor.of(config), lambda: io.BytesIO(config.data))
    client.put_manifest(image, Manifest(Descriptor.of(config)).to_document())
    with build_hooks(
        open_store(), native_pip=False, cache_from=[f"type=registry,ref={image}"], client=client
    ) as hooks:
        assert hooks.warnings == [f"no build cache at {image} yet: nothing imported from it"]
    # an artifact that is neither a cache nor an image: a clear error before anything is built
    other = Reference.parse(f"{registry.host}/other:latest")
    odd = Document(b"{}", "application/vnd.example.thing+json")
    client.push_blob(other, Descriptor.of(odd), lambda: io.BytesIO(odd.data))
    client.put_manifest(other, Manifest(Descriptor.of(odd)).to_document())
    with pytest.raises(InvalidDocument, match="is not a manyarch build cache"):
        build_hooks(
            open_store(), native_pip=False, cache_from=[f"type=registry,ref={other}"], client=client
        )
    client.close()


def _entry(root: Path, n: int, size: int, used: float) -> CacheEntry:
    blob = bytes([n]) * size
    d = Digest.of(blob)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / d.hex).write_bytes(blob)
    key = f"{n:064x}"
    e = CacheEntry(key, Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", d, size), str(d))
    p = root / "entries" / key[:2] / f"{key}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(e.to_json()))
    os.utime(p, (used, used))
    return e


def test_prune_drops_least_recently_used_first(tmp_path: Path) -> None:
    root = tmp_path / "bc"
    es = [_entry(root, n, 1000, 1_000_000 + n) for n in range(1, 6)]  # entry 1 is the oldest
    r = prune(keep_bytes=2500, root=root)
    assert (r.removed, r.kept, r.size) == (3, 2, 2000)
    assert [e.key for _, e, _ in entries(root)] == [es[3].key, es[4].key]
    assert sorted(p.name for p in (root / "blobs/sha256").iterdir()) == sorted(
        e.layer.digest.hex for e in es[3:] if e.layer
    )
    assert r.freed == 3000
    r = prune(all=True, root=root)
    assert r.kept == 0 and entries(root) == []


@pytest.mark.parametrize(
    ("text", "export", "expected"),
    [
        ("type=local,dest=/tmp/c", True, ("local", "/tmp/c")),
        ("type=local,src=/tmp/c", False, ("local", "/tmp/c")),
        ("/tmp/c", False, ("local", "/tmp/c")),
    ],
)
def test_cache_spec(text: str, export: bool, expected: tuple[str, str]) -> None:
    spec = CacheSpec.parse(text, export=export)
    assert (spec.type, str(spec.path)) == expected


def test_registry_cache_spec() -> None:
    spec = CacheSpec.parse("type=registry,ref=localhost:5000/app:buildcache,mode=max", export=True)
    assert (spec.type, spec.ref, spec.path) == ("registry", "localhost:5000/app:buildcache", None)


@pytest.mark.parametrize(
    "text", ["type=registry", "type=registry,ref=", "type=local,src=/x", "type=gha", "type=local"]
)
def test_cache_spec_errors(text: str) -> None:
    with pytest.raises(InvalidArgument):
        CacheSpec.parse(text, export=True)


@pytest.mark.parametrize(
    ("text", "n"),
    [("10GB", 10 * 1024**3), ("512MiB", 512 * 1024**2), ("1000", 1000), ("1.5k", 1536)],
)
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_build_options_take_the_hooks(tmp_path: Path) -> None:
    hooks = build_hooks(open_store(), native_pip=True)
    opts = BuildOptions(
        tmp_path,
        tmp_path / "Dockerfile",
        AMD64,
        interceptors=hooks.interceptors,
        observers=hooks.observers,
    )
    # the cache first, then native mkdir -p, native apt, native pip
    assert len(opts.interceptors) == 4 and len(opts.observers) == 1
    from manyarch.imagebuild.nativeapt.interceptor import NativeAptInterceptor
    from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
    from manyarch.imagebuild.nativeshell import NativeMkdirInterceptor

    assert isinstance(opts.interceptors[1], NativeMkdirInterceptor)
    assert isinstance(opts.interceptors[2], NativeAptInterceptor)
    assert isinstance(opts.interceptors[3], NativePipInterceptor)
    assert len(build_hooks(open_store(), native_apt=False).interceptors) == 3
    assert len(build_hooks(open_store(), native_apt=False, native_pip=False).interceptors) == 1


def test_prune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from manyarch.cli.main import main

    root = tmp_path / "cache" / "manyarch" / "buildcache"
    for n in range(1, 4):
        _entry(root, n, 1000, 1_000_000 + n)
    assert main(["prune", "--keep-storage", "1500"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["prune", "--all"]) == 0
    assert entries(root) == []
    assert main(["prune", "--keep-storage", "lots"]) == 2
