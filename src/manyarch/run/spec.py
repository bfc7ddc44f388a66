"""What a container's sandbox is made of, besides the image: its init, mounts, names.

- ``--init``: a static native init (tini, from Debian's ``tini`` package, as
  docker's ``docker-init`` is) bound at ``/sbin/docker-init`` and run as PID 1
  with the program as its child. On by default for an emulated container: as
  PID 1 under QEMU a program that re-raises SIGTERM (uvicorn) never dies,
  because the kernel drops a signal PID 1 sends itself; as tini's child it
  dies of it, and tini exits 128+15, as under ``docker run --init``.
- ``-v``/``--mount``/``--tmpfs``/``--read-only``: binds, tmpfs mounts and a
  read-only root, in bubblewrap's order (mounts, then the root made read-only).
- ``-h``/``--add-host``: ``/etc/hostname`` and ``/etc/hosts`` written into the
  container's directory and bound read-only, as docker writes them.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

from manyarch.errors import InvalidArgument, SandboxError, ToolMissing
from manyarch.run.mounts import Mount, prepare_volume, volume_path
from manyarch.sandbox.bwrap import Bind
from manyarch.sandbox.rootpath import resolve_in_root

#: Where the init is bound, as docker binds its own.
INIT_PATH = "/sbin/docker-init"
#: Static inits, most specific first (docker's own tini, Debian's tini-static).
INIT_CANDIDATES = ("docker-init", "tini-static")
_HOST_GATEWAY = "host-gateway"


def init_binary() -> Path:
    """The host's static init; :class:`ToolMissing` names the package when there is none."""
    override = os.environ.get("MANYARCH_INIT")
    if override:
        return Path(override)
    for name in INIT_CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ToolMissing("tini-static", "tini")


def init_argv(argv: Sequence[str]) -> list[str]:
    """The command line under the init (docker's ``docker-init -- CMD``)."""
    return [INIT_PATH, "--", *argv]


def parse_add_host(text: str) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or ``NAME=IP``; IP may be ``host-gateway``) as (name, ip)."""
    sep = "=" if "=" in text else ":"
    name, _, ip = text.partition(sep)
    ip = ip.strip("[]")
    if not name or not ip:
        raise InvalidArgument(f"invalid --add-host {text!r}", "write --add-host NAME:IP")
    if ip != _HOST_GATEWAY:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        except OSError as e:
            raise InvalidArgument(
                f"invalid IP address in --add-host {text!r}", "e.g. --add-host db:10.0.0.5"
            ) from e
    return name, ip


def default_gateway(route: Path = Path("/proc/net/route")) -> str:
    """The host's IPv4 default gateway (pasta maps it to the host's loopback)."""
    try:
        lines = route.read_text().splitlines()[1:]
    except OSError:
        return "127.0.0.1"
    for line in lines:
        f = line.split()
        if len(f) > 2 and f[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(f[2], 16)))
    return "127.0.0.1"


def hosts_file(hostname: str, extra: Sequence[tuple[str, str]], *, host_network: bool) -> str:
    """``/etc/hosts`` as docker writes it (the host's own with ``--network host``)."""
    gateway = "127.0.0.1" if host_network else default_gateway()
    if host_network:
        try:
            base = Path("/etc/hosts").read_text()
        except OSError:
            base = ""
        base = base if base.endswith("\n") or not base else base + "\n"
    else:
        base = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n"
        )
    lines = [f"{gateway if ip == _HOST_GATEWAY else ip}\t{name}" for name, ip in extra]
    # the container has a host name of its own (its UTS namespace) even on the host's network
    lines.append(f"127.0.1.1\t{hostname}")
    return base + "".join(f"{line}\n" for line in lines)


def name_files(directory: Path, hostname: str, extra: Sequence[tuple[str, str]], *,
               host_network: bool) -> list[Bind]:  # fmt: skip
    """Write the container's ``/etc/hostname`` and ``/etc/hosts``; binds that show them."""
    etc = directory / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(hosts_file(hostname, extra, host_network=host_network))
    return [
        Bind(etc / "hostname", "/etc/hostname", readonly=True),
        Bind(etc / "hosts", "/etc/hosts", readonly=True),
    ]


def mount_binds(mounts: Sequence[Mount], image_root: Path) -> tuple[list[Bind], list[str]]:
    """Binds for bind mounts and volumes, and bwrap options for the tmpfs mounts."""
    binds: list[Bind] = []
    tmpfs: list[str] = []
    for m in mounts:
        if m.type == "tmpfs":
            if m.size:
                tmpfs += ["--size", str(m.size)]
            tmpfs += ["--perms", f"{m.mode:o}", "--tmpfs", m.target]
            if m.readonly:
                tmpfs += ["--remount-ro", m.target]
            continue
        if m.type == "volume":
            source = prepare_volume(m.source, image_root, m.target)
        else:
            source = Path(m.source)
            if not source.exists():
                # docker's -v makes a missing host directory (its --mount refuses, earlier)
                source.mkdir(parents=True)
        binds.append(Bind(source, m.target, readonly=m.readonly))
    return binds, tmpfs


def make_workdir(root: Path, workdir: str) -> None:
    """Create the working directory in the container's view when it is missing (as docker)."""
    if not workdir or workdir == "/":
        return
    try:
        path = resolve_in_root(root, workdir)
    except SandboxError:
        return
    if not path.exists():
        try:
            path.mkdir(mode=0o755, parents=True)
        except OSError as e:
            raise SandboxError(f"cannot create the working directory {workdir}: {e}") from e


__all__ = [
    "INIT_PATH",
    "Mount",
    "init_argv",
    "init_binary",
    "mount_binds",
    "name_files",
    "parse_add_host",
    "volume_path",
]
