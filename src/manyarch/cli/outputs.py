"""buildx's ``--output`` (and ``--push``, ``-t``) as destinations of :meth:`Session.publish`:
one parser and one set of rules for ``build`` and ``base``.

* ``type=registry`` (``--push``; ``type=image,push=true``): every name
  (``-t``, ``name=a,b``) in its registry;
* ``type=oci,dest=PATH``: an OCI layout directory, or an OCI archive when
  ``tar=true`` (or, without ``tar=``, when PATH ends in ``.tar``), tagged with
  the first name's tag;
* ``type=docker,dest=FILE``: a ``docker load`` archive named by every name;
* ``type=docker`` without ``dest`` (``--load``): the local store, every name;
* ``oci-mediatypes=true|false`` on any of them chooses the media types of all.

``type=local`` and ``type=tar`` (a filesystem export), ``dest=-`` (stdout) and
``type=image`` without a push need what manyarch does not have: usage errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from manyarch.cli.common import UsageError

if TYPE_CHECKING:
    from manyarch.oci.reference import Reference
    from manyarch.publish import Destination, MediaTypes

TYPES = ("registry", "image", "oci", "docker", "local", "tar")


@dataclass(frozen=True)
class OutputSpec:
    """One ``--output`` (``type=registry|oci|docker|image,...``) after parsing."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)


def parse_output(text: str) -> OutputSpec:
    """Parse buildx's ``--output`` CSV (``type=oci,dest=out.tar``; a bare path is type=local)."""
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
    if kind not in TYPES:
        raise UsageError(
            f"unsupported --output type {kind or '(none)'!r}",
            "use type=registry (same as --push), type=oci,dest=PATH or type=docker,dest=FILE.tar",
        )
    return OutputSpec(kind, attrs)


@dataclass(frozen=True)
class Outputs:
    """Where a result goes, and the media types asked for (None: each destination's own)."""

    destinations: list[Destination]
    media_types: MediaTypes | None
    names: list[Reference]


def outputs(
    texts: Sequence[str], tags: Sequence[str], *, push: bool, load: bool = False
) -> Outputs:
    """The destinations of ``--output`` flags, ``-t`` names, ``--push`` and ``--load``."""
    from manyarch.oci.reference import Reference
    from manyarch.publish import (
        DockerArchive,
        LayoutDestination,
        OciArchive,
        RegistryDestination,
        StoreDestination,
    )

    specs = [parse_output(t) for t in texts]
    if push:
        specs.append(OutputSpec("registry"))
    if load:
        specs.append(OutputSpec("docker"))
    names = [Reference.parse(t) for t in tags]
    for spec in specs:
        if spec.type in ("registry", "image"):
            listed = filter(None, spec.attrs.get("name", "").split(","))
            names.extend(Reference.parse(n) for n in listed)
    explicit = next((s.attrs["oci-mediatypes"] for s in specs if "oci-mediatypes" in s.attrs), None)
    tag = (names[0].tagged_or_latest().tag if names else None) or "latest"
    full = str(names[0].tagged_or_latest()) if names else None
    dests: list[Destination] = []
    for spec in specs:
        if spec.type == "image" and spec.attrs.get("push") != "true":
            raise UsageError("type=image without push=true needs a Docker daemon", "add push=true")
        if spec.type in ("registry", "image"):
            if not names:
                raise UsageError("--push needs a name", "give one with -t REGISTRY/NAME:TAG")
            if not any(isinstance(d, RegistryDestination) for d in dests):
                dests.extend(RegistryDestination(n) for n in names)
            continue
        if spec.type not in ("oci", "docker"):
            raise UsageError(
                f"cannot write --output type={spec.type}",
                "use --push, --output type=oci,dest=PATH or type=docker,dest=FILE.tar",
            )
        dest = spec.attrs.get("dest")
        if spec.type == "docker" and not dest:
            dests.append(StoreDestination(tuple(names)))  # docker's --load: its image store
            continue
        if not dest or dest == "-":
            raise UsageError(
                f"--output type={spec.type} needs dest=PATH (stdout is not supported)",
                "a directory, or an archive ending in .tar",
            )
        if spec.type == "docker":
            dests.append(DockerArchive(Path(dest), tuple(names)))
        elif spec.attrs.get("tar", "true" if dest.endswith(".tar") else "false") == "true":
            dests.append(OciArchive(Path(dest), tag, full))
        else:
            dests.append(LayoutDestination(Path(dest), tag, full))
    media: MediaTypes | None = None
    if explicit is not None:
        media = "docker" if explicit != "true" else "oci"
    return Outputs(dests, media, names)
