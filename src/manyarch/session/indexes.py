"""``imagetools create``'s sources and annotations, read as buildx reads them
(docker/buildx ``commands/imagetools/create.go``, ``util/imagetools/create.go``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from manyarch.errors import InvalidArgument
from manyarch.oci.digest import Digest
from manyarch.oci.platform import Platform
from manyarch.oci.reference import AnyReference, LayoutReference, Reference, parse_any

_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


def _repo(ref: AnyReference) -> str:
    return ref.name if isinstance(ref, Reference) else f"oci-layout://{ref.path}"


def resolve_sources(sources: Sequence[str], targets: Sequence[str]) -> list[AnyReference]:
    """The sources, a bare ``sha256:...`` named in the one repository the tags and the
    other sources share (buildx's ``defaultRepo``; several repositories: refused)."""
    parsed: list[AnyReference | Digest] = []
    for text in sources:
        if _DIGEST.match(text) and "/" not in text and text.startswith("sha"):
            parsed.append(Digest.parse(text))
        else:
            parsed.append(parse_any(text))
    tags = [parse_any(t) for t in targets]
    repos = {_repo(t) for t in tags} | {_repo(p) for p in parsed if not isinstance(p, Digest)}
    default: AnyReference | None = None
    if len(repos) == 1:
        default = next((p for p in parsed if not isinstance(p, Digest)), None)
        if default is None and tags:
            default = tags[0]
    out: list[AnyReference] = []
    for text, p in zip(sources, parsed, strict=True):
        if not isinstance(p, Digest):
            out.append(p)
        elif default is None:
            if not repos:
                raise InvalidArgument(
                    "no repositories specified, please set a reference in tag or source"
                )
            raise InvalidArgument(
                f'multiple repositories specified, cannot infer repository for "{text}"',
                "write the source as REPOSITORY@sha256:...",
            )
        elif isinstance(default, Reference):
            out.append(Reference(default.registry, default.repository, None, p))
        else:
            out.append(LayoutReference(default.path, None, p))
    return out


def create_annotations(
    items: Mapping[str, str] | Sequence[str] | None,
) -> tuple[dict[str, str], Callable[[Platform | None], dict[str, str]]]:
    """The index's annotations and, per entry platform, its descriptor's: ``index:`` and
    ``manifest-descriptor[PLATFORM]:`` as buildx takes them for ``imagetools create``."""
    from manyarch.export.annotations import Annotations

    notes = Annotations.parse(items)
    for a in notes.items:
        if a.kind in ("", "manifest"):
            raise InvalidArgument(
                f'"{a.kind}" annotations are not supported yet',
                "imagetools create takes index:KEY=VALUE and manifest-descriptor:KEY=VALUE",
            )
        if a.kind == "index-descriptor":
            raise InvalidArgument(
                f'"{a.kind}" annotations are invalid while creating an image',
                "use index:KEY=VALUE",
            )

    return notes.index(), notes.manifest_descriptor
