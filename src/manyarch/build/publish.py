"""Publishers: take a built image or index from the local store to where it goes.

One protocol, one implementation per destination (ko's ``publish``): a
registry, an OCI layout directory, an OCI archive, a docker archive. They
compose; none of them is mixed into the builder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from manyarch.errors import UsageError
from manyarch.images import LayoutSink, LayoutSource, Progress, RegistrySink, copy
from manyarch.layout import Layout
from manyarch.oci.manifest import Descriptor
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

    def publish(self, store: Layout, desc: Descriptor) -> list[str]:
        """Copy the image into the layout (or archive) under ``tag``."""
        source = LayoutSource(store, str(desc.digest))
        if self.dest.suffix == ".tar":
            with tempfile.TemporaryDirectory(dir=self.dest.parent or None) as tmp:
                layout = Layout.open(Path(tmp) / "layout", create=True)
                copy(source, LayoutSink(layout), tag=self.tag)
                partial = self.dest.with_name(self.dest.name + ".partial")
                layout.export_tar(partial)
                partial.replace(self.dest)
            return [str(self.dest)]
        layout = Layout.open(self.dest, create=True)
        copy(source, LayoutSink(layout), tag=self.tag)
        return [f"oci-layout://{self.dest}:{self.tag}@{desc.digest}"]


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
            if not attrs and "type" not in attrs:
                # buildx: a bare path means type=local,dest=PATH
                attrs = {"type": "local", "dest": key}
                continue
            raise UsageError(f"invalid --output {text!r}: {part!r} is not key=value")
        attrs[key.strip()] = value.strip()
    kind = attrs.pop("type", "")
    if kind not in ("registry", "image", "oci", "docker", "local", "tar"):
        raise UsageError(
            f"unsupported --output type {kind or '(none)'!r}",
            "use type=registry (same as --push), type=oci,dest=PATH or type=docker,dest=FILE.tar",
        )
    return OutputSpec(kind, attrs)


def write_metadata(path: Path, desc: Descriptor, names: Sequence[str]) -> None:
    """``--metadata-file``, as buildx writes it."""
    data: dict[str, Any] = {
        "containerimage.digest": str(desc.digest),
        "containerimage.descriptor": desc.to_json(),
    }
    if names:
        data["image.name"] = ",".join(names)
    path.write_text(json.dumps(data, indent=2) + "\n")
