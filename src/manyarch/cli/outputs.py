"""buildx's ``--output`` (and ``--push``, ``-t``) as destinations of :meth:`Session.publish`:
one parser and one set of rules for ``build`` and ``base``.

* ``type=registry`` (``--push``; ``type=image,push=true``): every name
  (``-t``, ``name=a,b``) in its registry;
* ``type=oci,dest=PATH``: an OCI layout directory, or an OCI archive when
  ``tar=true`` (or, without ``tar=``, when PATH ends in ``.tar``), tagged with
  the first name's tag;
* ``type=docker,dest=FILE``: a ``docker load`` archive named by every name;
* ``type=docker`` without ``dest`` (``--load``): the local store, every name;
* ``oci-mediatypes=true|false`` on any of them chooses the media types of all;
* ``push-by-digest=true``: pushed without a tag (``NAME@DIGEST`` only), the
  digest told by ``--metadata-file``/``--iidfile``; ``name-canonical=true`` is
  accepted and changes nothing (BuildKit adds ``NAME@DIGEST`` to a local image
  store only, and manyarch pushes);
* ``compression=gzip|zstd|uncompressed``, ``compression-level=N``,
  ``force-compression=true``, and ``annotation[-TYPE][[PLATFORM]].KEY=VALUE``,
  the image's: see :mod:`manyarch.export`.

A boolean attribute given without a value (``push-by-digest``) is true, as in
BuildKit. ``-t`` names replace the ``name=`` of the outputs (buildx's
``fill in image exporter names from tags``).

``type=local`` and ``type=tar`` (a filesystem export), ``dest=-`` (stdout) and
``type=image`` without a push need what manyarch does not have: usage errors.
"""

from __future__ import annotations

import re
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
    #: the names as given (``image.name`` of the metadata file)
    texts: list[str] = field(default_factory=list)
    compression: str = "gzip"
    compression_level: int | None = None
    force_compression: bool = False
    #: ``annotation*`` attributes of the outputs, in ``--annotation``'s spelling
    annotations: list[str] = field(default_factory=list)
    by_digest: bool = False


_BOOLS = {"true": True, "1": True, "": True, "false": False, "0": False}
#: BuildKit's ``annotation(-TYPE)?([PLATFORM])?.KEY`` exporter attribute
_ANNOTATION = re.compile(r"^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$")


def _bool(specs: Sequence[OutputSpec], key: str) -> bool:
    for spec in specs:
        if key in spec.attrs:
            value = spec.attrs[key].strip().lower()
            if value not in _BOOLS:
                raise UsageError(f"invalid boolean value {spec.attrs[key]!r} for {key}")
            return _BOOLS[value]
    return False


def _image_attrs(specs: Sequence[OutputSpec]) -> tuple[str, int | None, list[str]]:
    """What the outputs ask of the image itself: compression, its level, annotations."""
    compression, level, notes = "gzip", None, []
    for spec in specs:
        for key, value in spec.attrs.items():
            m = _ANNOTATION.match(key)
            if m is not None:
                kind, plat, name = m.groups()
                where = (kind or "") + (f"[{plat}]" if plat else "")
                notes.append(f"{where}:{name}={value}" if where else f"{name}={value}")
            elif key == "compression":
                if value not in ("gzip", "zstd", "uncompressed"):
                    raise UsageError(
                        f"unsupported compression type {value}",
                        "use gzip, zstd or uncompressed (estargz: not written by manyarch)",
                    )
                compression = value
            elif key == "compression-level":
                try:
                    level = int(value)
                except ValueError as e:
                    raise UsageError(
                        f"non-integer value {value} specified for compression-level"
                    ) from e
    return compression, level, notes


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
    given = list(tags)
    if not given:
        for spec in specs:
            if spec.type in ("registry", "image", "oci", "docker"):
                given.extend(n for n in spec.attrs.get("name", "").split(",") if n)
    names = [Reference.parse(t) for t in given]
    by_digest = _bool(specs, "push-by-digest")
    if by_digest:
        for n in names:
            if n.tag is not None or n.digest is not None:
                raise UsageError(
                    f"can't push tagged ref {n} by digest",
                    f"name the repository alone: name={n.name}",
                )
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
                dests.extend(RegistryDestination(n, by_digest=by_digest) for n in names)
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
    compression, level, notes = _image_attrs(specs)
    return Outputs(
        dests,
        media,
        names,
        given,
        compression=compression,
        compression_level=level,
        force_compression=_bool(specs, "force-compression"),
        annotations=notes,
        by_digest=by_digest,
    )
