"""The facts of a build that its provenance states: request, times, identity, sources."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import shutil
import string
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from manyarch.attest.provenance import BuildFacts
from manyarch.oci.platform import host_platform

_ID_ALPHABET = string.ascii_lowercase + string.digits


def go_time(when: float) -> str:
    """``when`` as Go's RFC3339Nano (fraction trimmed of trailing zeros)."""
    t = datetime.datetime.fromtimestamp(when, datetime.UTC)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def builder_platform() -> str:
    """The platform of this builder as BuildKit names its own (``linux/amd64``, no level)."""
    p = host_platform()
    return f"{p.os}/{p.architecture}" if p.architecture in ("amd64", "arm64") else str(p)


def invocation_id(seed: bytes | None = None) -> str:
    """A build's id in BuildKit's form (25 characters of ``[a-z0-9]``); derived from ``seed``
    when given (SOURCE_DATE_EPOCH builds: the same inputs give the same statement)."""
    if seed is None:
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(25))
    h = int.from_bytes(hashlib.sha256(seed).digest(), "big")
    out = []
    for _ in range(25):
        h, r = divmod(h, len(_ID_ALPHABET))
        out.append(_ID_ALPHABET[r])
    return "".join(out)


def git_vcs(context: Path) -> dict[str, str]:
    """``vcs:source`` and ``vcs:revision`` as buildx reads them from the context's git
    checkout (the remote's URL without credentials; ``-dirty`` after local changes)."""
    git = shutil.which("git")
    if git is None:
        return {}

    def run(*args: str) -> str | None:
        try:
            r = subprocess.run(
                [git, "-C", str(context), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    revision = run("rev-parse", "HEAD")
    if not revision:
        return {}
    out: dict[str, str] = {}
    remote = run("config", "--get", "remote.origin.url")
    if remote:
        parts = urlsplit(remote)
        if parts.scheme and parts.hostname:  # user:token@host would be published
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            remote = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        out["source"] = remote
    if run("status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    out["revision"] = revision
    return out


def build_facts(
    *,
    dockerfile: Path,
    context: Path,
    build_args: Mapping[str, str],
    labels: Mapping[str, str],
    target: str | None,
    started: float,
    finished: float,
    source_date_epoch: int | None,
) -> BuildFacts:
    """What a build's provenance says (materials and steps are added per platform)."""
    args = {f"build-arg:{k}": v for k, v in build_args.items()}
    if source_date_epoch is not None:  # buildx passes the variable on as a build arg
        args.setdefault("build-arg:SOURCE_DATE_EPOCH", str(source_date_epoch))
    args.update({f"label:{k}": v for k, v in labels.items()})
    if target:
        args["target"] = target
    try:
        data = dockerfile.read_bytes()
    except OSError:
        data = b""
    if source_date_epoch is not None:
        start = end = go_time(source_date_epoch)
        seed = repr((sorted(args.items()), data, str(dockerfile.name))).encode()
        ident = invocation_id(seed)
    else:
        start, end, ident = go_time(started), go_time(finished), invocation_id()
    return BuildFacts(
        entry_point=dockerfile.name,
        args=args,
        builder_platform=builder_platform(),
        started=start,
        finished=end,
        invocation_id=ident,
        dockerfile=data,
        vcs=git_vcs(context),
    )
