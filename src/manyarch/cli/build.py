"""``manyarch build``: the flags of ``docker buildx build``, mapped onto :meth:`Session.build`
and :meth:`Session.publish`.

Media types follow the outputs, as buildx's do: Docker media types when any
output is a registry or a docker archive (a manifest list, as the seed's
buildx run produced), OCI ones otherwise (skopeo 1.9 only resolves OCI media
types in a layout's index.json); ``oci-mediatypes=true|false`` on an output
chooses for all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from manyarch.cli.common import UsageError, add_registry_flags, session, stderr_is_tty

if TYPE_CHECKING:
    from manyarch.imagebuild.options import BuildResult, StepEvent, StepProgress


def register(sub: Any) -> None:
    """Add the ``build`` command."""
    p = sub.add_parser(
        "build",
        help="build a multi-platform image from a Dockerfile (docker buildx build's flags)",
        description="Build an image for one or more platforms; --push sends ONE reference "
        "(an index with one manifest per platform). Registry outputs get Docker media "
        "types by default (like buildx), OCI layouts get OCI media types.",
    )
    p.add_argument("context", help="build context directory")
    p.add_argument("-f", "--file", help="Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag; repeatable")
    p.add_argument("--platform", action="append", default=[], help="e.g. linux/amd64,linux/arm64")
    p.add_argument("--push", action="store_true", help="same as --output type=registry")
    p.add_argument(
        "--load",
        action="store_true",
        help="name the result in the local store, for images and run (type=docker, no dest)",
    )
    p.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        help="type=registry[,oci-mediatypes=true] | type=oci,dest=DIR|FILE.tar | "
        "type=docker,dest=FILE.tar",
    )
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--target", help="build this stage")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    _add_image_flags(p)
    _add_ci_flags(p)
    p.add_argument(
        "--progress", default="auto", choices=["auto", "tty", "plain", "quiet", "rawjson"]
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument(
        "--no-cache-filter", action="append", default=[], metavar="STAGE", help="no cache for STAGE"
    )
    p.add_argument(
        "--no-native-pip",
        action="store_true",
        help="run `pip install` lines under emulation too (as buildx does)",
    )
    p.add_argument(
        "--no-native-apt",
        action="store_true",
        help="run a foreign platform's `apt-get install` lines wholly under emulation",
    )
    _add_cache_flags(p)
    p.add_argument("--pull", action="store_true", help="always resolve the base again")
    p.add_argument("--builder", help="accepted for buildx compatibility; no effect")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def _add_image_flags(p: argparse.ArgumentParser) -> None:
    """What the image carries besides its files: annotations, attestations."""
    p.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="[TYPE:]KEY=VALUE",
        help="TYPE: index, index-descriptor, manifest, manifest-descriptor, "
        "optionally [os/arch]; none: every manifest",
    )
    p.add_argument(
        "--attest",
        action="append",
        default=[],
        metavar="type=sbom|provenance,...",
        help="add an attestation (none unless asked: see docs/ci.md)",
    )
    p.add_argument("--provenance", help="true, false, or mode=min|max[,version=v1]")
    p.add_argument("--sbom", help="true or false")


def _add_ci_flags(p: argparse.ArgumentParser) -> None:
    """The flags build-push-action passes: metadata, RUN sandboxes' hosts and limits, --call."""
    p.add_argument(
        "--network",
        default="default",
        choices=["default", "host", "none"],
        help="RUN steps' network: default (their own, outbound through pasta), host, none",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="ENTITLEMENT",
        help="network.host (RUN --network=host) or security.insecure (RUN --security=insecure)",
    )
    p.add_argument("--metadata-file", type=Path, help="write buildx's build metadata (JSON)")
    p.add_argument("--iidfile", type=Path, help="write the image ID (config or index digest)")
    p.add_argument("--add-host", action="append", default=[], metavar="HOST:IP")
    p.add_argument("--shm-size", metavar="SIZE", help="/dev/shm of RUN steps, e.g. 128m")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    p.add_argument(
        "--secret", action="append", default=[], metavar="id=ID[,src=PATH|,env=VAR]",
        help="a secret for RUN --mount=type=secret (never in the image)",
    )  # fmt: skip
    p.add_argument(
        "--ssh", action="append", default=[], metavar="default|ID=SOCKET",
        help="an ssh-agent socket for RUN --mount=type=ssh",
    )  # fmt: skip
    p.add_argument(
        "--build-context", action="append", default=[], metavar="NAME=DIR|docker-image://REF",
        help="a named context for FROM, COPY --from and RUN --mount from= (or oci-layout://)",
    )  # fmt: skip
    p.add_argument(
        "--call",
        metavar="METHOD",
        help="check | outline | targets | build, [,format=json][,ignorestatus=true]",
    )
    p.add_argument("--check", action="store_true", help="same as --call=check")


def _add_cache_flags(p: argparse.ArgumentParser) -> None:
    """Where the build cache travels."""
    p.add_argument(
        "--cache-to",
        action="append",
        default=[],
        metavar="CACHE",
        help="export the cache this build used: type=local,dest=DIR, type=registry,ref=REF, "
        "type=inline, type=gha",
    )
    p.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="CACHE",
        help="also look in: type=local,src=DIR, type=registry,ref=REF (a cache, or an image "
        "with an inline cache), type=gha; repeatable",
    )


def _kv(items: list[str], what: str, from_env: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and not from_env):
            raise UsageError(f"invalid {what} {item!r}", f"write {what} KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue  # docker: --build-arg KEY takes KEY from the environment if set
            value = os.environ[key]
        out[key] = value
    return out


def _refuse(args: argparse.Namespace) -> None:
    """What buildx has and manyarch has not: said before anything runs."""
    if len([c for c in args.cache_to if "type=inline" not in c.split(",")]) > 1:
        raise UsageError("only one --cache-to besides type=inline is supported")
    _check_flags(args)


def _check_flags(args: argparse.Namespace) -> None:
    """Flags the library would refuse, refused before anything runs (as usage errors)."""
    from manyarch.attest.options import attestations
    from manyarch.errors import InvalidArgument
    from manyarch.export.annotations import parse_annotations
    from manyarch.imagebuild.cache import CacheSpec
    from manyarch.imagebuild.runflags import RunFlags
    from manyarch.imagebuild.secrets import SecretSource, parse_ssh

    try:
        attestations(args.attest, sbom=args.sbom, provenance=args.provenance)
        parse_annotations(args.annotation)
        RunFlags.parse(tuple(args.add_host), args.shm_size, tuple(args.ulimit))
        for text in args.secret:
            SecretSource.parse(text)
        for text in args.ssh:
            parse_ssh(text)
        for c in args.cache_to:
            CacheSpec.parse(c, export=True)
        for c in args.cache_from:
            CacheSpec.parse(c, export=False)
    except InvalidArgument as e:
        raise UsageError(e.message, e.hint) from e


def _run(args: argparse.Namespace) -> int:
    from manyarch.cli.outputs import outputs
    from manyarch.oci.platform import parse_platforms
    from manyarch.publish import DockerArchive, media_types_for

    _refuse(args)
    call = _call(args)
    platforms = parse_platforms(args.platform) if args.platform else []
    if call is not None and call.name != "build":
        return _subrequest(args, call)
    outs = outputs(args.output, args.tag, push=args.push, load=args.load)
    if len(platforms) > 1 and any(isinstance(d, DockerArchive) for d in outs.destinations):
        raise UsageError(
            "--output type=docker holds one platform; "
            f"{len(platforms)} were asked ({', '.join(map(str, platforms))})",
            "build one --platform for a docker archive, or use type=oci,dest=FILE.tar",
        )
    mode = "quiet" if args.quiet else args.progress
    if mode == "auto":
        mode = "tty" if stderr_is_tty() else "plain"

    def say(message: str) -> None:
        if mode != "quiet":
            print(message, file=sys.stderr)

    with session(args) as s:
        started = time.monotonic()
        with progress_printer(mode, sys.stderr) as show:
            result = s.build(
                args.context,
                platforms=platforms,
                dockerfile=args.file,
                build_args=_kv(args.build_arg, "--build-arg", from_env=True),
                target=args.target,
                network=args.network,
                allow=[a for v in args.allow for a in v.split(",") if a],
                labels=_kv(args.label, "--label"),
                annotations=[*outs.annotations, *args.annotation],
                media_types=outs.media_types or media_types_for(outs.destinations),
                compression=outs.compression,
                compression_level=outs.compression_level,
                force_compression=outs.force_compression,
                attest=args.attest,
                sbom=args.sbom,
                provenance=args.provenance,
                names=outs.texts,
                add_hosts=args.add_host,
                shm_size=args.shm_size,
                ulimits=args.ulimit,
                no_cache=args.no_cache,
                no_cache_filter=[f for v in args.no_cache_filter for f in v.split(",") if f],
                secrets=args.secret,
                ssh=args.ssh,
                build_contexts=_kv(args.build_context, "--build-context"),
                cache_from=args.cache_from,
                cache_to=args.cache_to,
                native_pip=not args.no_native_pip,
                native_apt=not args.no_native_apt,
                progress=show,
            )
        for warning in result.warnings:
            say(f"WARNING: {warning}")
        if not outs.destinations:
            say(
                "WARNING: no output specified; the result is only in the build cache "
                "(--load names it in the local store, for images and run)"
            )
        names = [s.publish(result, d) for d in outs.destinations]
    _write_files(args, result, outs.texts)
    if mode == "quiet":
        print(result.descriptor.digest)
    else:
        say(f"built {result.descriptor.digest} in {time.monotonic() - started:.1f}s")
        for n in names:
            say(n)
    return 0


@dataclass(frozen=True)
class CallFunc:
    """buildx's ``--call NAME[,format=json][,ignorestatus=BOOL]`` (``check`` is ``lint``)."""

    name: str
    format: str = ""
    ignore_status: bool = False


def _call(args: argparse.Namespace) -> CallFunc | None:
    """``--call`` / ``--check`` as buildx's ``ParseCallFunc`` reads them."""
    text = "check" if args.check else (args.call or "")
    if args.check and args.call:
        raise UsageError("--check is --call=check: give one of them")
    if not text:
        return None
    name, fmt, ignore = "", "", False
    for field_ in text.split(","):
        key, sep, value = field_.partition("=")
        if not sep:
            if name:
                raise UsageError(f"invalid print value: {text}")
            name = key
        elif key == "format":
            fmt = value
        elif key == "ignorestatus":
            ignore = value.lower() in ("1", "t", "true")
        else:
            raise UsageError(f"invalid print field: {field_}")
    if name not in ("check", "lint", "outline", "targets", "build"):
        raise UsageError(f"unknown --call {name!r}", "use check, outline, targets or build")
    return CallFunc("lint" if name == "check" else name, fmt, ignore)


def _subrequest(args: argparse.Namespace, call: CallFunc) -> int:
    """Print a subrequest's answer as buildx does; the exit status of ``check``."""
    from manyarch.subrequests.lint import results_json, source_lines
    from manyarch.subrequests.outline import print_outline, print_targets

    with session(args) as s:
        if call.name == "outline":
            got = s.outline(args.context, dockerfile=args.file, target=args.target)
            print(
                json.dumps(got, indent=2) if call.format == "json" else print_outline(got), end=""
            )
            return 0
        if call.name == "targets":
            listed = s.targets(args.context, dockerfile=args.file)
            print(
                json.dumps(listed, indent=2) if call.format == "json" else print_targets(listed),
                end="",
            )
            return 0
        platform = args.platform[0].split(",")[0] if args.platform else None
        found = s.check(
            args.context,
            dockerfile=args.file,
            build_args=_kv(args.build_arg, "--build-arg", from_env=True),
            platform=platform,
        )
    file = args.file or "Dockerfile"
    if call.format == "json":
        print(json.dumps(results_json(found.warnings, str(file), found.text), indent=2))
    elif found.warnings:
        n = len(found.warnings)
        print(f"Check complete, {'1 warning has' if n == 1 else f'{n} warnings have'} been found!")
        for w in found.warnings:
            print(f"\nWARNING: {w.rule} - {w.url}\n{w.detail}")
            print(source_lines(found.text, Path(file).name, w.line, w.end_line), end="")
    else:
        print("Check complete, no warnings found.")
    return 1 if found.warnings and not call.ignore_status else 0


def _write_files(args: argparse.Namespace, result: BuildResult, names: list[str]) -> None:
    """``--metadata-file`` and ``--iidfile``, as buildx writes them."""
    from manyarch.cli.metadata import build_metadata
    from manyarch.publish import image_id

    if args.metadata_file:
        args.metadata_file.write_text(json.dumps(build_metadata(result, names), indent=2))
    if args.iidfile:
        args.iidfile.write_text(image_id(result.descriptor, result.config))


@contextmanager
def progress_printer(mode: str, out: TextIO) -> Iterator[StepProgress | None]:
    """A progress callback for ``--progress`` (tty: live view; plain: buildx's lines)."""
    if mode == "quiet":
        yield None
    elif mode == "tty":
        with _LiveProgress(out) as live:
            yield live
    elif mode == "rawjson":
        yield _JsonProgress(out)
    else:
        yield _PlainProgress(out)


class _PlainProgress:
    """``#N [linux/arm64 3/6] RUN ...``, ``#N 0.512 output``, ``#N DONE 1.2s``, as buildx."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ids: dict[tuple[str, int], int] = {}
        self.started: dict[int, float] = {}

    def __call__(self, e: StepEvent) -> None:
        key = (str(e.platform), e.index)
        if key not in self.ids:
            self.ids[key] = len(self.ids) + 1
        n = self.ids[key]
        if e.status == "start":
            self.started[n] = time.monotonic()
            line = f"#{n} {e.name}"
        elif e.status == "log":
            line = f"#{n} {time.monotonic() - self.started.get(n, time.monotonic()):.3f} {e.output}"
        elif e.status == "done":
            line = f"#{n} DONE {e.seconds or 0:.1f}s"
        elif e.status == "cached":
            line = f"#{n} CACHED"
        else:
            line = f"#{n} ERROR {e.name}"
        print(line, file=self.out, flush=True)


class _JsonProgress:
    """One JSON object per event (``--progress=rawjson``)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, e: StepEvent) -> None:
        obj = {
            "platform": str(e.platform),
            "step": e.index,
            "total": e.total,
            "name": e.text,
            "status": e.status,
        }
        if e.seconds is not None:
            obj["seconds"] = round(e.seconds, 3)
        if e.output:
            obj["output"] = e.output
        print(json.dumps(obj), file=self.out, flush=True)


class _LiveProgress:
    """A live view on a terminal: running steps with their last output line.

    Finished steps are printed once above the view; a RUN's output is kept and
    shown only when the step fails.
    """

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.lock = threading.Lock()
        self.running: dict[tuple[str, int], tuple[StepEvent, float, str]] = {}
        self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)

    def __enter__(self) -> _LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        with self.lock:
            rows = list(self.running.values())
        lines = []
        for e, t0, last in rows:
            t = Text(f" => {e.name} ", style="bold blue")
            t.append(f"{now - t0:.1f}s", style="dim")
            lines.append(t)
            if last:
                lines.append(Text("    " + last[-160:], style="dim", no_wrap=True))
        return Group(*lines)

    def __call__(self, e: StepEvent) -> None:
        key = (str(e.platform), e.index)
        with self.lock:
            if e.status == "start":
                self.running[key] = (e, time.monotonic(), "")
            elif e.status == "log":
                if key in self.running:
                    ev, t0, _ = self.running[key]
                    self.running[key] = (ev, t0, e.output)
            else:
                self.running.pop(key, None)
        if e.status == "done":
            self.console.print(f"[green] => {_escape(e.name)}[/] [dim]{e.seconds or 0:.1f}s[/]")
        elif e.status == "cached":
            self.console.print(f"[green] => CACHED {_escape(e.name)}[/]")
        elif e.status == "error":
            self.console.print(f"[red] => ERROR {_escape(e.name)}[/]")
            for line in e.output.splitlines():
                self.console.print(f"    {_escape(line)}", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
