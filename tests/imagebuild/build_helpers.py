"""Helpers for the executor tests: contexts, builds on the tiny base, reading results."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.imagebuild.executor import build
from manyarch.imagebuild.options import BuildOptions, BuildResult, StepEvent
from manyarch.layout import Layout
from manyarch.oci.manifest import Descriptor, ImageConfig, Index, Manifest
from manyarch.oci.platform import Platform

BOTH = (Platform.parse("linux/amd64"), Platform.parse("linux/arm64"))


def make_context(root: Path, dockerfile: str, files: Mapping[str, str | bytes] = {}) -> Path:
    """A build context with a Dockerfile and ``files`` (relative path -> content)."""
    ctx = root / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, content in files.items():
        p = ctx / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return ctx


@dataclass
class Built:
    """A build's result and the events it reported."""

    result: BuildResult
    events: list[StepEvent] = field(default_factory=list)

    @property
    def store(self) -> Layout:
        """The store the build wrote into."""
        return self.result.store

    def manifest_desc(self, platform: str) -> Descriptor:
        """The manifest descriptor for one platform."""
        for d in self.result.manifests:
            if str(d.platform) == platform:
                return d
        raise KeyError(platform)

    def manifest(self, platform: str) -> Manifest:
        """One platform's manifest."""
        return Manifest.parse(self.store.read_document(self.manifest_desc(platform)))

    def config(self, platform: str) -> ImageConfig:
        """One platform's image config."""
        return ImageConfig.parse(self.store.read_document(self.manifest(platform).config))

    def layer(self, platform: str, i: int) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
        """Entries of layer ``i`` (negative counts from the top): name -> (info, data)."""
        return read_layer(self.store, self.manifest(platform).layers[i])

    def output(self, platform: str) -> list[str]:
        """Every RUN output line reported for ``platform``."""
        return [e.output for e in self.events if e.status == "log" and str(e.platform) == platform]


def read_layer(store: Layout, desc: Descriptor) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """A layer blob's entries."""
    data = store.read_blob(desc.digest)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.rstrip("/")] = (m, f.read() if f else None)
    return out


def run_build(ctx: Path, base: str, platforms: tuple[Platform, ...] = BOTH, **kw: object) -> Built:
    """Build ``ctx`` FROM ``base`` (given as the BASE build arg) for ``platforms``."""
    events: list[StepEvent] = []
    args = dict(kw.pop("build_args", {}) or {})  # type: ignore[call-overload]
    args.setdefault("BASE", base)
    options = BuildOptions(
        context=ctx,
        dockerfile=Path(str(kw.pop("dockerfile", ctx / "Dockerfile"))),
        platforms=platforms,
        build_args=args,
        **kw,  # type: ignore[arg-type]
    )
    result = build(options, events.append)
    return Built(result, events)


def index_of(built: Built) -> Index:
    """The build's index."""
    return Index.parse(built.store.read_document(built.result.descriptor))


def leftovers(tmp: Path) -> list[str]:
    """What a build left in its MANYARCH_TMPDIR."""
    return sorted(os.listdir(tmp))
