"""What ``imagetools inspect`` shows: buildx's text layout, its Go templates,
and per-platform sizes; :class:`Inspection` holds them for one image."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from manyarch.errors import PlatformNotFound
from manyarch.images import Source, parse_top
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Descriptor, ImageConfig, Index, Manifest
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


def format_template(fmt: str, name: str, source: Source) -> str:
    """buildx's ``--format``: a Go template (:mod:`manyarch.gotemplate`) over ``.Name``,
    ``.Manifest`` and ``.Image`` (every platform's config, or one:
    ``{{json .Image "linux/arm64"}}``, ``{{json (index .Image "linux/arm64")}}``);
    ``json`` indents as buildx's does."""
    from manyarch.gotemplate import indented_json, render

    data = _TemplateData(name, source)
    return render(fmt.strip(), data, {"json": indented_json}) + "\n"


class _TemplateData:
    """What buildx's templates see; each part is read only when a template asks for it."""

    def __init__(self, name: str, source: Source) -> None:
        self.Name = name
        self._source = source

    @property
    def Manifest(self) -> Any:
        desc, top = describe(self._source)
        if not isinstance(top, Index):
            return desc.to_json()
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

    def Image(self, wanted: str | None = None) -> Any:
        _, top = describe(self._source)
        configs = image_configs(self._source, top)
        if wanted is not None:
            from manyarch.oci.platform import Platform

            p = Platform.parse(wanted)
            for key, cfg in configs.items():
                if Platform.parse(key).same(p):
                    return cfg
            raise PlatformNotFound(wanted, list(configs), where=self.Name)
        if isinstance(top, Manifest) or len(configs) == 1:
            return next(iter(configs.values()))
        return configs


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
