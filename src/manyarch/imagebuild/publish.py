"""Publishers: take a built image or index from the local store to where it goes.

One protocol, one implementation per destination (ko's ``publish``): a
registry, an OCI layout directory, an OCI archive, a docker archive. They
compose; none of them is mixed into the builder.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from manyarch.errors import UsageError
from manyarch.images import LayoutSink, LayoutSource, Progress, RegistrySink, copy, parse_top
from manyarch.layout import Layout, export_tar
from manyarch.oci.manifest import Descriptor, Index, Manifest
from manyarch.oci.reference import Reference
from manyarch.registry import RegistryClient


class Publisher(Protocol):
    """Takes a descriptor in the store somewhere; returns where it went."""

    def publish(self, store: Layout, desc: Descriptor) -> list[str]:
        """Publish ``desc`` (an index or a manifest) from ``store``."""
        ...


@dataclass
class RegistryPublisher:
    """Pushes to one or more tags in registries (children before the index)."""

    refs: Sequence[Reference]
    client: Callable[[], RegistryClient]
    jobs: int = 4
    progress: Progress | None = None

    def publish(self, store: Layout, desc: Descriptor) -> list[str]:
        """Push to every tag; returns ``ref@digest`` for each."""
        out = []
        source = LayoutSource(store, str(desc.digest))
        for ref in self.refs:
            sink = RegistrySink(self.client(), ref)
            copy(source, sink, tag=ref.tag or "latest", jobs=self.jobs, progress=self.progress)
            out.append(f"{ref.name}:{ref.tag or 'latest'}@{desc.digest}")
        return out


@dataclass
class LayoutPublisher:
    """Writes into an OCI layout directory, or an OCI archive when ``dest`` ends in .tar."""

    dest: Path
    tag: str = "latest"
    #: the full name (``docker.io/library/app:1``), kept as buildx keeps it, in
    #: ``io.containerd.image.name``, so that ``load`` names the image as docker does
    name: str | None = None

    def _named(self, layout: Layout) -> None:
        if self.name:
            desc = layout.resolve(self.tag)
            layout.tag(self.tag, desc.with_annotations(**{"io.containerd.image.name": self.name}))

    def publish(self, store: Layout, desc: Descriptor) -> list[str]:
        """Copy the image into the layout (or archive) under ``tag``."""
        source = LayoutSource(store, str(desc.digest))
        if self.dest.suffix == ".tar":
            with tempfile.TemporaryDirectory(dir=self.dest.parent or None) as tmp:
                layout = Layout.open(Path(tmp) / "layout", create=True)
                copy(source, LayoutSink(layout), tag=self.tag)
                self._named(layout)
                partial = self.dest.with_name(self.dest.name + ".partial")
                export_tar(layout, partial)
                partial.replace(self.dest)
            return [str(self.dest)]
        layout = Layout.open(self.dest, create=True)
        copy(source, LayoutSink(layout), tag=self.tag)
        self._named(layout)
        return [f"oci-layout://{self.dest}:{self.tag}@{desc.digest}"]


@dataclass
class StorePublisher:
    """``--load``: names the result in the local store itself, where ``images`` and ``run``
    find it; every platform of an index is kept under the name, as containerd's store keeps
    them (``run`` takes the host's, ``--platform`` another)."""

    refs: Sequence[Reference] = ()

    def publish(self, store: Layout, desc: Descriptor) -> list[str]:
        """Tag ``desc`` in ``store`` under each name (``none@DIGEST`` when there is none)."""
        names = [str(r.tagged_or_latest()) for r in self.refs] or [f"none@{desc.digest}"]
        plain = Descriptor(desc.media_type, desc.digest, desc.size, desc.platform)
        for name in names:
            # what ``pull`` and ``load`` record too: the full name, the digest it resolved to
            store.tag(
                name,
                plain.with_annotations(
                    **{
                        "io.containerd.image.name": name,
                        "io.manyarch.repo.digest": str(desc.digest),
                    }
                ),
            )
        return [f"{n} (local store)" for n in names]


@dataclass
class DockerArchivePublisher:
    """Writes a ``docker load`` archive (``manifest.json``, config and layer blobs) of ONE image.

    The layout is the one ``docker save`` writes since Docker 25 (blobs under
    ``blobs/sha256/``, named from ``manifest.json``); the layer blobs stay
    gzip-compressed, which ``docker load`` reads as it reads plain tars.
    """

    dest: Path
    tags: Sequence[Reference] = ()

    def publish(self, store: Layout, desc: Descriptor) -> list[str]:
        """Write the archive; an index with more than one platform is refused."""
        top = parse_top(store.read_document(desc))
        if isinstance(top, Index):
            if len(top.manifests) != 1:
                plats = ", ".join(str(m.platform) for m in top.manifests)
                raise UsageError(
                    f"--output type=docker holds one platform, and this build has {plats}",
                    "build one --platform for a docker archive, or use type=oci,dest=FILE.tar",
                )
            desc = top.manifests[0]
            top = parse_top(store.read_document(desc))
        assert isinstance(top, Manifest)
        blobs = [top.config, *top.layers]
        entry = {
            "Config": _blob_name(top.config),
            "RepoTags": [_repo_tag(t) for t in self.tags],
            "Layers": [_blob_name(d) for d in top.layers],
        }
        repositories: dict[str, dict[str, str]] = {}
        if top.layers:
            for t in self.tags:
                repo = Reference(t.registry, t.repository).familiar
                repositories.setdefault(repo, {})[t.tag or "latest"] = top.layers[-1].digest.hex
        partial = self.dest.with_name(self.dest.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tf:
            seen: set[str] = set()
            for d in blobs:
                name = _blob_name(d)
                if name in seen:
                    continue
                seen.add(name)
                info = tarfile.TarInfo(name)
                info.size = d.size
                info.mode = 0o644
                with store.open_blob(d.digest) as f:
                    tf.addfile(info, f)
            for name, obj in (("manifest.json", [entry]), ("repositories", repositories)):
                data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
        partial.replace(self.dest)
        return [str(self.dest)]


def _repo_tag(ref: Reference) -> str:
    """``name:tag`` as docker prints it (``demo:1``, ``host:5000/app:latest``)."""
    return Reference(ref.registry, ref.repository, ref.tag or "latest").familiar


def _blob_name(d: Descriptor) -> str:
    return f"blobs/{d.digest.algorithm}/{d.digest.hex}"


@dataclass(frozen=True)
class OutputSpec:
    """One ``--output`` (``type=registry|oci|image,...``) after parsing."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)


def parse_output(text: str) -> OutputSpec:
    """Parse buildx's ``--output`` CSV (``type=oci,dest=out.tar``; ``-`` is unsupported)."""
    attrs: dict[str, str] = {}
    for part in text.split(","):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            if not attrs:
                # buildx: a bare path means type=local,dest=PATH
                attrs = {"type": "local", "dest": key}
                continue
            raise UsageError(f"invalid --output {text!r}: {part!r} is not key=value")
        attrs[key.strip()] = value.strip()
    kind = attrs.pop("type", "")
    if kind not in ("registry", "image", "oci", "docker", "local", "tar"):
        # local and tar (a filesystem export) parse, so the builder can say they are unsupported
        raise UsageError(
            f"unsupported --output type {kind or '(none)'!r}",
            "use type=registry (same as --push), type=oci,dest=PATH or type=docker,dest=FILE.tar",
        )
    return OutputSpec(kind, attrs)


def write_metadata(
    path: Path, desc: Descriptor, names: Sequence[str], config: object | None = None
) -> None:
    """``--metadata-file``, as buildx writes it."""
    plain = Descriptor(desc.media_type, desc.digest, desc.size)
    data: dict[str, Any] = {
        "containerimage.descriptor": plain.to_json(),
        "containerimage.digest": str(desc.digest),
    }
    if config is not None:
        data["containerimage.config.digest"] = str(config)
    if names:
        data["image.name"] = ",".join(names)
    path.write_text(json.dumps(data, indent=2) + "\n")
