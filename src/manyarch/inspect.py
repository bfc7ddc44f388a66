"""What ``imagetools inspect`` shows: buildx's text layout, its Go templates,
and per-platform sizes; :class:`Inspection` holds them for one image."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from manyarch.errors import InvalidArgument, PlatformNotFound
from manyarch.images import Source, parse_top
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import REFERENCE_DIGEST, Descriptor, ImageConfig, Index, Manifest
from manyarch.units import human_size

_PFX = "  "


def tabulate(rows: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    """Go's tabwriter (minwidth 0, padding 1) on ``label\\tvalue`` rows, trailing spaces cut."""
    width = max((len(k) for k, _ in rows), default=0) + 1
    return [(indent + k.ljust(width) + v).rstrip() for k, v in rows]


def format_text(name: str, top: Descriptor, index: Index | None) -> str:
    """The text ``docker buildx imagetools inspect`` prints."""
    lines = tabulate(
        [("Name:", name), ("MediaType:", top.media_type), ("Digest:", str(top.digest))]
    )
    if index is None:
        return "\n".join(lines) + "\n"
    lines += ["", "Manifests:"]
    base = _strip_digest(name)
    block: list[tuple[str, str]] = []
    out_blocks: list[list[str]] = []
    for i, m in enumerate(index.manifests):
        if i:
            block.append(("", ""))
        block.append(("Name:", f"{base}@{m.digest}"))
        block.append(("MediaType:", m.media_type))
        if m.platform is not None:
            block.append(("Platform:", str(m.platform)))
            if m.platform.os_version:
                block.append(("OSVersion:", m.platform.os_version))
            if m.platform.os_features:
                block.append(("OSFeatures:", ", ".join(m.platform.os_features)))
            if m.urls:
                block.append(("URLs:", ", ".join(m.urls)))
            if m.annotations:
                # buildx flushes its tabwriter here: the annotations align on their own
                block.append(("Annotations:", ""))
                out_blocks.append(tabulate(block, _PFX))
                block = []
                out_blocks.append(
                    tabulate([(f"{k}:", v) for k, v in sorted(m.annotations.items())], _PFX * 2)
                )
    if block:
        out_blocks.append(tabulate(block, _PFX))
    for b in out_blocks:
        lines += b
    return "\n".join(lines) + "\n"


def _strip_digest(name: str) -> str:
    return name.split("@", 1)[0]


def describe(source: Source) -> tuple[Descriptor, Index | Manifest]:
    """The root descriptor and parsed document of a source."""
    doc = source.root()
    return Descriptor.of(doc), parse_top(doc)


#: ``{{json EXPR}}`` or ``{{EXPR}}``; EXPR is ``.``, ``.Field.Sub``, ``(index .Field "KEY").Sub``
#: or manyarch's older ``.Image "linux/arm64"``
_TEMPLATE = re.compile(r"^\{\{\s*(?P<json>json\s+)?(?P<expr>.+?)\s*\}\}$")
_INDEX = re.compile(
    r'^\(\s*index\s+(?P<path>\.[A-Za-z.]*)\s+"(?P<key>[^"]+)"\s*\)(?P<rest>(\.[A-Za-z]+)*)$'
)
_PATH = re.compile(r'^(?P<path>\.(?:[A-Za-z]+(?:\.[A-Za-z]+)*)?)(?:\s+"(?P<key>[^"]+)")?$')
_HINT = (
    "use {{json .Manifest}}, {{json .Image}}, {{json .SBOM}}, {{json .Provenance}}, {{json .}}, "
    '{{.Manifest}}, {{.Name}} or {{json (index .Image "linux/arm64")}}'
)


def go_json(obj: Any, *, sort: bool = True) -> str:
    """Go's ``json.MarshalIndent(v, "", "  ")`` of decoded JSON (maps sorted, <>& escaped)."""
    text = json.dumps(obj, indent=2, sort_keys=sort, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _manifest_json(desc: Descriptor, top: Index | Manifest) -> dict[str, Any]:
    if isinstance(top, Index):
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": top.media_type,
            "digest": str(desc.digest),
            "size": desc.size,
            "manifests": [d.to_json() for d in top.manifests],
        }
        if top.annotations:
            obj["annotations"] = dict(top.annotations)
        return obj
    return desc.to_json()


def format_template(fmt: str, name: str, source: Source) -> str:
    """The Go templates of buildx's ``imagetools inspect --format``.

    ``.Name``, ``.Manifest`` (``{{.Manifest}}`` alone is the text layout), ``.Image``,
    ``.SBOM`` and ``.Provenance`` (per platform when the image has several, as
    buildx's loader gives them: ``{"SPDX": ...}``, ``{"SLSA": ...}``), ``.``;
    ``(index .Image "linux/arm64")`` picks one platform, ``.SBOM.SPDX`` a field.
    """
    m = _TEMPLATE.match(fmt.strip())
    if m is None:
        raise InvalidArgument(f"unsupported template {fmt!r}", _HINT)
    expr, as_json = m.group("expr").strip(), bool(m.group("json"))
    if expr == ".Name" and not as_json:
        return name + "\n"
    desc, top = describe(source)
    if expr == ".Manifest" and not as_json:
        return format_text(name, desc, top if isinstance(top, Index) else None)
    if not as_json:
        raise InvalidArgument(f"unsupported template {fmt!r}", _HINT)
    path, key, rest = _parse_expr(expr, fmt)
    fields = path.strip(".").split(".") if path != "." else []
    loader = _Loader(name, source, desc, top)
    sorted_keys = bool(fields) and fields[0] in ("SBOM", "Provenance")
    if key is not None:
        if len(fields) != 1:
            raise InvalidArgument(f"unsupported template {fmt!r}", _HINT)
        value: Any = loader.pick(key, fields[0], name)
    else:
        value = loader.root() if not fields else loader.field(fields[0])
        rest = fields[1:]
    for f in rest:
        value = _attr(value, f, fmt)
    return go_json(value, sort=sorted_keys) + "\n"


def _parse_expr(expr: str, fmt: str) -> tuple[str, str | None, list[str]]:
    m = _INDEX.match(expr)
    if m is not None:
        rest = [r for r in m.group("rest").split(".") if r]
        return m.group("path"), m.group("key"), rest
    m = _PATH.match(expr)
    if m is None:
        raise InvalidArgument(f"unsupported template {fmt!r}", _HINT)
    return m.group("path"), m.group("key"), []


def _attr(value: Any, field: str, fmt: str) -> Any:
    if isinstance(value, dict) and field in value:
        return value[field]
    if isinstance(value, dict) and not value:
        return None
    raise InvalidArgument(f"unsupported template {fmt!r}: no field {field}", _HINT)


class _Loader:
    """What the templates see of one image (buildx's ``loader``): read when asked."""

    def __init__(self, name: str, source: Source, desc: Descriptor, top: Index | Manifest) -> None:
        self.name, self.source, self.desc, self.top = name, source, desc, top

    def field(self, name: str) -> Any:
        if name == "Name":
            return self.name
        if name == "Manifest":
            return _manifest_json(self.desc, self.top)
        if name == "Image":
            return self.single(image_configs(self.source, self.top))
        if name in ("SBOM", "Provenance"):
            return self.single(attestations(self.source, self.top, name))
        raise InvalidArgument(f"unsupported template field .{name}", _HINT)

    def single(self, per_platform: dict[str, Any]) -> Any:
        """buildx: one platform's value alone, several by platform (``{}`` when none)."""
        if isinstance(self.top, Manifest) or len(self.platforms()) <= 1:
            return next(iter(per_platform.values()), {})
        return per_platform

    def platforms(self) -> list[str]:
        if isinstance(self.top, Manifest):
            return []
        return [str(d.platform) for d in self.top.images() if d.platform is not None]

    def root(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "manifest": _manifest_json(self.desc, self.top),
            "image": self.field("Image"),
        }

    def pick(self, key: str, field: str, where: str) -> Any:
        """``(index .FIELD "PLATFORM")``: one platform's value."""
        from manyarch.oci.platform import Platform

        if field == "Image":
            per = image_configs(self.source, self.top)
        elif field in ("SBOM", "Provenance"):
            per = attestations(self.source, self.top, field)
        else:
            raise InvalidArgument(f"cannot index .{field or 'the image'} by platform", _HINT)
        wanted = Platform.parse(key)
        for k, v in per.items():
            if Platform.parse(k).same(wanted):
                return v
        if field != "Image":
            return {}
        raise PlatformNotFound(key, list(per), where=where)


def attestations(source: Source, top: Index | Manifest, kind: str) -> dict[str, Any]:
    """Per platform, buildx's ``{"SPDX": ..., "AdditionalSPDXs": [...]}`` (``kind`` SBOM)
    or ``{"SLSA": ...}`` (Provenance), from the attestation manifests of an index."""
    out: dict[str, Any] = {}
    if isinstance(top, Manifest):
        return out
    by_subject: dict[str, list[Descriptor]] = {}
    for d in top.manifests:
        subject = d.annotations.get(REFERENCE_DIGEST) or d.annotations.get(
            "com.docker.reference.digest"
        )
        if d.is_attestation and subject:
            by_subject.setdefault(subject, []).append(d)
    for image in top.images():
        found: dict[str, Any] = {}
        for att in by_subject.get(str(image.digest), []):
            manifest = Manifest.parse(source.document(att))
            for layer in manifest.layers:
                kind_of = layer.annotations.get("in-toto.io/predicate-type", "")
                if kind == "SBOM" and kind_of == "https://spdx.dev/Document":
                    pred = json.loads(source.document(layer).data).get("predicate")
                    if "SPDX" in found:
                        found.setdefault("AdditionalSPDXs", []).append(pred)
                    else:
                        found["SPDX"] = pred
                elif kind == "Provenance" and kind_of.startswith("https://slsa.dev/provenance/"):
                    found.setdefault(
                        "SLSA", json.loads(source.document(layer).data).get("predicate")
                    )
        if found and image.platform is not None:
            out[str(image.platform)] = found
    return out


def image_configs(source: Source, top: Index | Manifest) -> dict[str, Any]:
    """Platform -> image config JSON, for the runnable images of an index or a manifest."""
    out: dict[str, Any] = {}
    manifests: list[tuple[Manifest, Descriptor | None]] = []
    if isinstance(top, Manifest):
        manifests.append((top, None))
    else:
        for entry in top.images():
            manifests.append((Manifest.parse(source.document(entry)), entry))
    for man, d in manifests:
        cdoc = source.document(man.config)
        cfg = ImageConfig.parse(cdoc)
        key = str(d.platform) if d is not None and d.platform else str(cfg.platform)
        out[key] = json.loads(cdoc.data)
    return out


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


@dataclass(frozen=True)
class PlatformSize:
    """Compressed size and layers of one platform's image."""

    platform: str
    size: int
    layers: tuple[Digest, ...]


def sizes(source: Source, top: Index | Manifest) -> list[PlatformSize]:
    """Per platform: compressed size (config + layers) and its layers."""
    out = []
    entries: list[tuple[str, Manifest]] = []
    if isinstance(top, Manifest):
        cfg = ImageConfig.parse(source.document(top.config))
        entries.append((str(cfg.platform), top))
    else:
        for d in top.images():
            entries.append((str(d.platform), Manifest.parse(source.document(d))))
    for plat, man in entries:
        total = man.config.size + sum(layer.size for layer in man.layers)
        out.append(PlatformSize(plat, total, tuple(layer.digest for layer in man.layers)))
    return out


def format_sizes(rows: list[PlatformSize]) -> str:
    """A table of sizes and of the layers the platforms share."""
    lines = ["", "Sizes:"]
    counts: dict[Digest, int] = {}
    for r in rows:
        for d in set(r.layers):
            counts[d] = counts.get(d, 0) + 1
    table = []
    for r in rows:
        shared = sum(1 for d in r.layers if counts[d] > 1)
        table.append(
            (f"{r.platform}:", f"{human_size(r.size)} in {len(r.layers)} layers ({shared} shared)")
        )
    lines += tabulate(table, _PFX)
    return "\n".join(lines) + "\n"


class Inspection:
    """One image or index as ``imagetools inspect`` shows it (read once, shown many ways)."""

    def __init__(self, name: str, source: Source) -> None:
        self.name = name
        self.source = source

    @cached_property
    def raw(self) -> bytes:
        """The exact bytes of the manifest or index (``--raw``)."""
        return self.source.root().data

    @cached_property
    def descriptor(self) -> Descriptor:
        """The descriptor of what the name resolves to."""
        return describe(self.source)[0]

    @cached_property
    def document(self) -> Index | Manifest:
        """The index or manifest, parsed."""
        return describe(self.source)[1]

    @property
    def text(self) -> str:
        """buildx's text layout."""
        top = self.document
        return format_text(self.name, self.descriptor, top if isinstance(top, Index) else None)

    def format(self, template: str) -> str:
        """A Go template of buildx's (``{{json .Manifest}}``, ``{{json .Image "linux/arm64"}}``)."""
        return format_template(template, self.name, self.source)

    @property
    def sizes(self) -> list[PlatformSize]:
        """Per platform: compressed size and layers."""
        return sizes(self.source, self.document)

    @property
    def sizes_text(self) -> str:
        """The sizes as a table, with the layers the platforms share."""
        return format_sizes(self.sizes)
