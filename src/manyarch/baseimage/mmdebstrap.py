"""mmdebstrap: one platform's packages downloaded and unpacked, nothing run."""

from __future__ import annotations

import logging
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from manyarch.baseimage.finish import RootfsInfo, finish_rootfs
from manyarch.baseimage.options import DEFAULT_MIRROR, MERGED_USR_HOOK, BaseOptions
from manyarch.baseimage.slim import configure_rootfs, finish_configured
from manyarch.debian.archs import debian_arch
from manyarch.debian.deb import parse_control
from manyarch.errors import BuildError, ManyarchError, ToolMissing
from manyarch.oci.platform import Platform, host_platform

log = logging.getLogger("manyarch.base")


def mmdebstrap_path() -> str:
    """The mmdebstrap program, or :class:`ToolMissing` naming the package."""
    path = shutil.which("mmdebstrap")
    if not path:
        raise ToolMissing("mmdebstrap")
    return path


def _is_snapshot(mirror: str) -> bool:
    return (urlsplit(mirror).hostname or "").startswith("snapshot.")


def mmdebstrap_command(opts: BaseOptions, platform: Platform, target: Path) -> list[str]:
    """The mmdebstrap command line that unpacks ``platform``'s packages into ``target``."""
    cmd = [
        mmdebstrap_path(),
        "--mode=root",
        "--variant=extract",
        f"--arch={debian_arch(platform)}",
        f"--include={','.join(opts.packages)}",
        *(f"--include={p}" for p in opts.patterns),
        # The .debs stay in /var/cache/apt/archives: their control data is
        # what the dpkg database is written from (then they are removed).
        "--skip=cleanup/apt/cache",
        '--aptopt=Acquire::Retries "2"',
    ]
    if MERGED_USR_HOOK.exists():
        # Bookworm's packages still ship /bin, /lib...; merged-/usr like every Debian image.
        cmd.append(f"--setup-hook={MERGED_USR_HOOK}")
    if _is_snapshot(opts.mirror):
        # snapshot.debian.org serves Release files whose Valid-Until has passed.
        cmd += [
            '--aptopt=Acquire::Check-Valid-Until "false"',
            '--aptopt=Apt::Key::gpgvcommand "/usr/libexec/mmdebstrap/gpgvnoexpkeysig"',
        ]
    return [*cmd, opts.suite, str(target), opts.mirror]


def _mmdebstrap_error(opts: BaseOptions, platform: Platform, stderr: str) -> ManyarchError:
    errors = [ln[3:].strip() for ln in stderr.splitlines() if ln.startswith("E: ")]
    text = "\n".join(errors) or stderr.strip()
    where = f"{opts.suite} ({debian_arch(platform)}) on {opts.mirror}"
    missing = re.findall(
        r"Unable to locate package (\S+)|Package '?([^' ]+)'? has no installation candidate",
        text,
    )
    if missing:
        names = sorted({a or b for a, b in missing})
        return BuildError(
            f"package {', '.join(names)} not found in {where}",
            f"check the name on https://packages.debian.org/{opts.suite}/ "
            "or remove it from --include",
        )
    if "does not have a Release file" in text:
        return BuildError(
            f"suite {opts.suite!r} not found on {opts.mirror}",
            "use a Debian suite the mirror has, such as bookworm, trixie or sid (--suite)",
        )
    if re.search(
        r"Could not connect|Failed to fetch|Temporary failure resolving|"
        r"index files failed to download|Connection failed",
        text,
    ):
        return BuildError(
            f"cannot download from mirror {opts.mirror}",
            f"check the URL and the network, or pass another --mirror (default {DEFAULT_MIRROR})",
        )
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    return BuildError(
        f"mmdebstrap failed for {platform}:\n{tail}",
        "run the command again with --debug to see the whole mmdebstrap output",
    )


def check_mirror(opts: BaseOptions) -> None:
    """Check, with one request, that the mirror answers and has the suite and architectures.

    Catches an unreachable mirror or an unknown suite before anything is
    started or written; ``file:`` mirrors are left to apt.
    """
    if urlsplit(opts.mirror).scheme not in ("http", "https"):
        return
    import httpx

    url = f"{opts.mirror.rstrip('/')}/dists/{opts.suite}/Release"
    try:
        with httpx.Client(
            timeout=opts.mirror_timeout,
            follow_redirects=True,
            verify=ssl.create_default_context(),
        ) as client:
            resp = client.get(url)
    except httpx.HTTPError as e:
        raise BuildError(
            f"cannot reach mirror {opts.mirror}: {e}",
            f"check the URL and the network, or pass another --mirror (default {DEFAULT_MIRROR})",
        ) from e
    if resp.status_code == 404:
        raise BuildError(
            f"suite {opts.suite!r} not found on {opts.mirror} ({url}: 404)",
            "use a Debian suite the mirror has, such as bookworm, trixie or sid (--suite)",
        )
    if resp.status_code >= 400:
        raise BuildError(
            f"mirror {opts.mirror} answered {resp.status_code} for {url}",
            "check the --mirror URL: it is the directory that holds dists/ and pool/",
        )
    fields = dict(parse_control(resp.text))
    arches = fields.get("Architectures", "").split()
    if arches:
        for p in opts.platforms:
            if debian_arch(p) not in arches:
                raise BuildError(
                    f"{opts.suite} on {opts.mirror} has no {debian_arch(p)} packages "
                    f"(platform {p})",
                    f"architectures there: {', '.join(arches)}",
                )


def prepare_rootfs(
    opts: BaseOptions,
    platform: Platform,
    target: Path,
    step: Callable[[str], None] | None = None,
) -> RootfsInfo:
    """Unpack ``platform``'s packages into the empty directory ``target`` and finish it.

    ``step(what)`` after each stage of a configured base (``opts.configured``).
    """
    cmd = mmdebstrap_command(opts, platform, target)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if opts.epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(opts.epoch)
    log.debug("%s: %s", platform, " ".join(cmd))
    proc = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        log.debug("mmdebstrap stderr:\n%s", proc.stderr)
        raise _mmdebstrap_error(opts, platform, proc.stderr)
    if not opts.configured:
        return finish_rootfs(target, opts.preset)
    report = step or (lambda _what: None)
    report("packages downloaded and extracted")
    emulated = platform.architecture != host_platform().architecture
    configure_rootfs(target, emulated=emulated, epoch=opts.epoch, step=report)
    return finish_configured(target, opts.preset)


def require_root() -> None:
    """mmdebstrap's root mode writes the rootfs with real ownership: it needs root."""
    if os.geteuid() != 0:
        raise BuildError(
            "manyarch base needs root: the rootfs keeps root-owned files as they are",
            "run it with sudo",
        )
