"""``manyarch imagetools inspect | create``, as ``docker buildx imagetools``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import add_registry_flags, client_factory
from manyarch.errors import UsageError

if TYPE_CHECKING:
    from manyarch.images import Sink, Source
    from manyarch.oci.manifest import Descriptor, Manifest
    from manyarch.oci.reference import LayoutReference, Reference


def register(sub: Any) -> None:
    """Add the ``imagetools`` command."""
    p = sub.add_parser("imagetools", help="inspect and combine images in a registry")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = s.add_parser("inspect", help="show an image or index (buildx's layout)")
    i.add_argument("name", help="REF or oci-layout://PATH[:TAG]")
    i.add_argument("--raw", action="store_true", help="print the exact bytes")
    i.add_argument("--format", help="Go template subset: {{json .Manifest}}, {{json .Image}}")
    i.add_argument("--sizes", action="store_true", help="per platform: size, layers, shared")
    add_registry_flags(i)
    i.set_defaults(func=_inspect)
    c = s.add_parser("create", help="combine images or indexes into one index")
    c.add_argument("sources", nargs="*", metavar="SRC")
    c.add_argument("-t", "--tag", action="append", default=[], help="target REF; repeatable")
    c.add_argument("--append", action="store_true", help="keep the target's existing manifests")
    c.add_argument("--dry-run", action="store_true", help="print the index, push nothing")
    c.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    add_registry_flags(c)
    c.set_defaults(func=_create)


def _name(ref: Reference | LayoutReference) -> str:
    from manyarch.oci.reference import Reference

    if isinstance(ref, Reference):
        return str(ref.tagged_or_latest())
    return str(ref)


def _inspect(args: argparse.Namespace) -> int:
    from manyarch.images import open_source
    from manyarch.inspect import describe, format_sizes, format_template, format_text, sizes
    from manyarch.oci.manifest import Index
    from manyarch.oci.reference import parse_any

    ref = parse_any(args.name)
    source = open_source(ref, client_factory(args))
    if args.raw:
        if args.format or args.sizes:
            raise UsageError("--raw cannot be combined with --format or --sizes")
        sys.stdout.buffer.write(source.root().data)
        return 0
    if args.format:
        sys.stdout.write(format_template(args.format, _name(ref), source))
        return 0
    desc, top = describe(source)
    sys.stdout.write(format_text(_name(ref), desc, top if isinstance(top, Index) else None))
    if args.sizes:
        sys.stdout.write(format_sizes(sizes(source, top)))
    return 0


def _entries(source: Source) -> list[tuple[Descriptor, Manifest | None]]:
    """The manifest descriptors a source contributes (with platforms)."""
    from manyarch.images import parse_top
    from manyarch.oci.manifest import Descriptor, ImageConfig, Index

    doc = source.root()
    top = parse_top(doc)
    if isinstance(top, Index):
        return [(d, None) for d in top.manifests]
    cfg = ImageConfig.parse(source.document(top.config))
    return [(Descriptor.of(doc, platform=cfg.platform), top)]


def _create(args: argparse.Namespace) -> int:
    from manyarch.images import open_sink, open_source
    from manyarch.oci import mediatypes as mt
    from manyarch.oci.manifest import Index
    from manyarch.oci.reference import parse_any

    if not args.tag and not args.dry_run:
        raise UsageError("imagetools create needs a target", "give one with -t REF")
    if not args.sources and not args.append:
        raise UsageError("no source image given", "name the images to combine")
    client = client_factory(args)
    targets = [parse_any(t) for t in args.tag]
    sources: list[Source] = [open_source(parse_any(s), client) for s in args.sources]
    if args.append and targets:
        sources.insert(0, open_source(targets[0], client))
    collected: list[tuple[Source, Descriptor]] = []
    for src in sources:
        for desc, _ in _entries(src):
            if any(d.digest == desc.digest for _, d in collected):
                continue
            if desc.platform and not desc.is_attestation:
                for _, d in collected:
                    if d.platform and not d.is_attestation and d.platform.same(desc.platform):
                        raise UsageError(
                            f"two sources give {desc.platform}: {d.digest} and {desc.digest}",
                            "combine images of different platforms",
                        )
            collected.append((src, desc))
    docker = all(mt.is_docker(d.media_type) for _, d in collected)
    annotations = dict(a.partition("=")[::2] for a in args.annotation)
    index = Index(
        tuple(d for _, d in collected),
        mt.DOCKER_MANIFEST_LIST if docker and not annotations else mt.OCI_INDEX,
        annotations={k.removeprefix("index:"): v for k, v in annotations.items()},
    )
    doc = index.to_document()
    if args.dry_run:
        print(json.dumps(json.loads(doc.data), indent=2))
        return 0
    for target in targets:
        sink, tag = open_sink(target, client)
        for src, desc in collected:
            _copy_child(src, sink, desc)
        sink.put_document(doc, tag)
        print(f"{_name(target)}@{doc.digest}", file=sys.stderr)
    return 0


def _copy_child(src: Source, sink: Sink, desc: Descriptor) -> None:
    from manyarch.images import copy_blobs, parse_top
    from manyarch.oci.manifest import Manifest

    mdoc = src.document(desc)
    child = parse_top(mdoc)
    if isinstance(child, Manifest):
        copy_blobs(src, sink, [child.config, *child.layers])
    else:
        for d in child.manifests:
            _copy_child(src, sink, d)
    sink.put_document(mdoc)
