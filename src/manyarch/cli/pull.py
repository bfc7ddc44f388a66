"""``manyarch pull REF [--platform P] [-q]``: :meth:`Session.pull`, printed as docker prints it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from manyarch.cli.common import UsageError, add_registry_flags, session

if TYPE_CHECKING:
    from manyarch.images import TransferEvent, TransferProgress
    from manyarch.oci.reference import AnyReference


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


def pull_printer(text: str, out: TextIO, *, quiet: bool = False) -> TransferProgress:
    """Shows a pull of ``text`` (the image as the user typed it) as docker does, on ``out``."""
    from manyarch.oci.reference import Reference
    from manyarch.run.local import parse_image_ref

    ref = parse_image_ref(text)

    def show(e: TransferEvent) -> None:
        if quiet:
            return
        line = None
        if e.status == "missing":
            line = f"Unable to find image '{text}' locally"
        elif e.status == "pulling" and isinstance(ref, Reference):
            tag = ref.tag or ("latest" if ref.digest is None else str(ref.digest))
            line = f"{tag}: Pulling from {ref.repository.removeprefix('library/')}"
        elif e.status == "pulling":
            line = f"Pulling from {ref}"
        elif e.status in ("exists", "copied") and e.digest is not None:
            line = (
                f"{e.digest.short}: {'Already exists' if e.status == 'exists' else 'Pull complete'}"
            )
        elif e.status in ("pulled", "up-to-date"):
            name = display(ref.tagged_or_latest() if isinstance(ref, Reference) else ref)
            done = "Image is up to date" if e.status == "up-to-date" else "Downloaded newer image"
            line = f"Digest: {e.digest}\nStatus: {done} for {name}"
        if line is not None:
            print(line, file=sys.stderr if e.status == "missing" else out, flush=True)

    return show


def _run(args: argparse.Namespace) -> int:
    from manyarch.oci.reference import Reference
    from manyarch.run.local import parse_image_ref

    ref = parse_image_ref(args.image)
    if args.all_tags and (not isinstance(ref, Reference) or ref.tag or ref.digest):
        raise UsageError(
            "tag can't be used with --all-tags/-a",
            f"give the repository alone: manyarch pull -a {args.image.split(':')[0]}",
        )
    with session(args) as s:
        names = s.tags(args.image) if args.all_tags else [args.image]
        for name in names:
            s.pull(
                name,
                platform=args.platform,
                progress=pull_printer(name, sys.stdout, quiet=args.quiet),
            )
    shown = ref.tagged_or_latest() if isinstance(ref, Reference) and not args.all_tags else ref
    print(shown)
    return 0
