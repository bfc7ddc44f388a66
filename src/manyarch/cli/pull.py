"""``manyarch pull REF [--platform P] [-q]``: the host's platform from the index, like docker."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from manyarch.cli.common import add_registry_flags, client_factory

if TYPE_CHECKING:
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import AnyReference
    from manyarch.run.local import PullResult


def register(sub: Any) -> None:
    """Add the ``pull`` command."""
    p = sub.add_parser(
        "pull",
        help="pull an image into the local store (the host's platform, or --platform)",
        description="Pull one platform of an image into the local store, fetching only "
        "the blobs it lacks.",
    )
    p.add_argument("image", metavar="REF", help="e.g. localhost:5000/fastapi-multiarch:latest")
    p.add_argument("--platform", help="e.g. linux/arm64 (default: this host's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the reference")
    p.add_argument("-a", "--all-tags", action="store_true", help="every tag of the repository")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def display(ref: AnyReference) -> str:
    """How docker names a reference in its messages."""
    from manyarch.oci.reference import Reference

    return ref.familiar if isinstance(ref, Reference) else str(ref)


def pull_and_report(
    args: argparse.Namespace,
    ref: AnyReference,
    platform: Platform | None,
    out: TextIO,
    *,
    quiet: bool = False,
) -> PullResult:
    """Pull, printing what docker prints (to ``out``)."""
    from manyarch.oci.reference import Reference
    from manyarch.run.local import pull
    from manyarch.store import open_store

    store = open_store()
    if not quiet:
        if isinstance(ref, Reference):
            tag = ref.tag or ("latest" if ref.digest is None else str(ref.digest))
            repo = ref.repository.removeprefix("library/")
            print(f"{tag}: Pulling from {repo}", file=out, flush=True)
        else:
            print(f"Pulling from {ref}", file=out, flush=True)

    def progress(line: str) -> None:
        if not quiet:
            print(line, file=out, flush=True)

    result = pull(
        ref,
        client_factory(args),
        platform=platform,
        store=store,
        jobs=getattr(args, "jobs", 4) or 4,
        progress=progress,
    )
    if not quiet:
        name = display(ref if not isinstance(ref, Reference) else ref.tagged_or_latest())
        print(f"Digest: {result.resolved}", file=out)
        if result.up_to_date:
            print(f"Status: Image is up to date for {name}", file=out)
        else:
            print(f"Status: Downloaded newer image for {name}", file=out)
    return result


def _run(args: argparse.Namespace) -> int:
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import Reference
    from manyarch.run.local import parse_image_ref

    ref = parse_image_ref(args.image)
    platform = Platform.parse(args.platform) if args.platform else None
    if args.all_tags:
        from manyarch.cli.common import client_factory
        from manyarch.errors import UsageError
        from manyarch.run.local import all_tags

        if not isinstance(ref, Reference) or ref.tag or ref.digest:
            raise UsageError(
                "tag can't be used with --all-tags/-a",
                f"give the repository alone: manyarch pull -a {args.image.split(':')[0]}",
            )
        for tagged in all_tags(ref, client_factory(args)):
            pull_and_report(args, tagged, platform, sys.stdout, quiet=args.quiet)
        print(ref.familiar if not args.quiet else ref)
        return 0
    pull_and_report(args, ref, platform, sys.stdout, quiet=args.quiet)
    full = ref.tagged_or_latest() if isinstance(ref, Reference) else ref
    print(full)
    return 0
