"""buildx's ``--annotation [TYPE[,TYPE...]:]KEY=VALUE``, and where BuildKit puts each.

TYPE is ``index``, ``index-descriptor``, ``manifest`` or ``manifest-descriptor``,
optionally with a platform in brackets (``manifest[linux/arm64]:KEY=VALUE``);
no TYPE means the manifests of every platform. BuildKit's image exporter
places them (moby/buildkit ``exporter/containerimage/writer.go``):

* ``manifest``: the image manifest's ``annotations`` (of one platform when named);
* ``manifest-descriptor``: that manifest's entry in the index (or the
  descriptor a single-platform export returns);
* ``index``: the index's ``annotations``;
* ``index-descriptor``: the descriptor the export returns (``containerimage.descriptor``
  of the metadata file, an OCI layout's ``index.json``): pushed nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from manyarch.errors import InvalidArgument
from manyarch.oci.platform import Platform

INDEX = "index"
INDEX_DESCRIPTOR = "index-descriptor"
MANIFEST = "manifest"
MANIFEST_DESCRIPTOR = "manifest-descriptor"
KINDS = (INDEX, INDEX_DESCRIPTOR, MANIFEST, MANIFEST_DESCRIPTOR)
#: buildx's ``annotationTypeRegexp``
_TYPE = re.compile(r"^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?$")


@dataclass(frozen=True)
class Annotation:
    """One annotation and where it goes (``kind`` "" is every platform's manifest)."""

    kind: str
    key: str
    value: str
    platform: Platform | None = None

    def __str__(self) -> str:
        where = self.kind + (f"[{self.platform}]" if self.platform else "")
        return f"{where}:{self.key}={self.value}" if where else f"{self.key}={self.value}"

    def applies_to(self, platform: Platform) -> bool:
        """Whether a manifest (or its descriptor) of ``platform`` takes it."""
        return self.platform is None or self.platform.same(platform)


def parse_annotation(text: str) -> list[Annotation]:
    """buildx's syntax: one per TYPE listed (``index,manifest:KEY=VALUE`` gives two)."""
    head, sep, value = text.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid annotation {text!r}, expected key=value")
    types, colon, key = head.partition(":")
    if not colon:
        return [Annotation("", head, value)]
    out = []
    for item in types.split(","):
        m = _TYPE.match(item)
        if m is None:
            raise InvalidArgument(
                f"invalid annotation type {item!r}, "
                "expected type and optional platform in square brackets"
            )
        kind, plat = m.group(1), m.group(2)
        if kind not in KINDS:
            raise InvalidArgument(
                f"unknown annotation type {kind!r}", f"use one of {', '.join(KINDS)}"
            )
        out.append(Annotation(kind, key, value, Platform.parse(plat) if plat else None))
    return out


def parse_annotations(items: Iterable[str] | Mapping[str, str]) -> tuple[Annotation, ...]:
    """Every ``--annotation`` (or a ``{"index:KEY": VALUE}`` mapping), parsed."""
    texts = [f"{k}={v}" for k, v in items.items()] if isinstance(items, Mapping) else list(items)
    return tuple(a for t in texts if t for a in parse_annotation(t))


@dataclass(frozen=True)
class Annotations:
    """The annotations of one export, by the place they go."""

    items: tuple[Annotation, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str] | Mapping[str, str] | None) -> Annotations:
        """From buildx's spellings."""
        return cls(parse_annotations(items or ()))

    def _of(self, kinds: tuple[str, ...], platform: Platform | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for a in self.items:  # BuildKit: the platform's own win over those for all
            if a.kind in kinds and a.platform is None:
                out[a.key] = a.value
        for a in self.items:
            if a.kind in kinds and a.platform is not None and platform is not None:
                out.update({a.key: a.value} if a.applies_to(platform) else {})
        return out

    def index(self) -> dict[str, str]:
        """The index's own annotations."""
        return self._of((INDEX,), None)

    def index_descriptor(self) -> dict[str, str]:
        """The annotations of the descriptor the export returns (an index)."""
        return self._of((INDEX_DESCRIPTOR,), None)

    def manifest(self, platform: Platform) -> dict[str, str]:
        """The annotations of ``platform``'s image manifest."""
        return self._of(("", MANIFEST), platform)

    def manifest_descriptor(self, platform: Platform | None) -> dict[str, str]:
        """The annotations of ``platform``'s entry in the index (None: those for all)."""
        return self._of((MANIFEST_DESCRIPTOR,), platform)

    @property
    def need_oci(self) -> bool:
        """Index and descriptor annotations need OCI media types (BuildKit forces them)."""
        return any(a.kind in (INDEX, INDEX_DESCRIPTOR, MANIFEST_DESCRIPTOR) for a in self.items)

    @property
    def has_index_kinds(self) -> bool:
        """``index:`` or ``index-descriptor:`` annotations (a single platform has no index)."""
        return any(a.kind in (INDEX, INDEX_DESCRIPTOR) for a in self.items)

    def check_platforms(self, platforms: Sequence[Platform]) -> None:
        """BuildKit's error for an annotation naming a platform the build has not."""
        for a in self.items:
            if a.platform is not None and not any(a.platform.same(p) for p in platforms):
                raise InvalidArgument(
                    f"invalid annotation: no platform {a.platform} found in source",
                    f"the build has {', '.join(map(str, platforms))}",
                )
