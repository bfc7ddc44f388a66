"""``-p HOST:CONTAINER``: the container's own network namespace, wired up by ``pasta``.

pasta (Debian's ``passt`` package, the user-mode networking podman uses by
default) joins the namespace bwrap created, gives it an interface with the
host's addresses and routes, and forwards the host ports it is told to;
connections from the host's loopback are spliced straight into the
namespace's loopback. It runs as a plain process next to the container and
ends with it: no daemon, no bridge, no iptables. As root it must be told to
stay root (``--runas 0:0``) and is handed the namespace as an open file,
because it drops privileges before it would open ``/proc/PID/ns/net`` itself.

Inside the namespace ``net.ipv4.ip_unprivileged_port_start`` is set to 0, as
Docker does, so a non-root image may listen on port 80.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from manyarch.errors import InvalidArgument, SandboxError, ToolMissing
from manyarch.sandbox.netns import spawn_pasta

_PORT = re.compile(
    r"^(?:(?P<ip>\[[0-9A-Fa-f:.]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(?P<host>\d*):)?(?P<ctr>\d+)(?:/(?P<proto>tcp|udp))?$"
)


@dataclass(frozen=True)
class PortMapping:
    """One ``-p [IP:]HOST:CONTAINER[/PROTO]``."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Parse docker's ``-p`` syntax; without a host port (``-p 80``) it is 0: any free one."""
        m = _PORT.match(text.strip())
        if not m:
            raise InvalidArgument(
                f"invalid port mapping {text!r}",
                "write HOST:CONTAINER (e.g. 8080:80), optionally IP: before and /udp after",
            )
        host, ctr = int(m.group("host") or 0), int(m.group("ctr"))
        for p in (host, ctr) if m.group("host") else (ctr,):
            if not 0 < p < 65536:
                raise InvalidArgument(f"invalid port {p} in {text!r}", "ports are 1 to 65535")
        ip = (m.group("ip") or "").strip("[]")
        return cls(host, ctr, m.group("proto") or "tcp", ip)

    def with_host_port(self) -> PortMapping:
        """This mapping with a free host port in place of 0 (the kernel's pick, as docker's)."""
        if self.host_port:
            return self
        family = socket.AF_INET6 if ":" in self.host_ip else socket.AF_INET
        kind = socket.SOCK_DGRAM if self.protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(family, kind) as s:
            s.bind((self.host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
            port = int(s.getsockname()[1])
        return replace(self, host_port=port)

    def pasta_spec(self) -> str:
        """The ``-t``/``-u`` argument: ``[IP/]HOST:CONTAINER``."""
        addr = f"{self.host_ip}/" if self.host_ip and self.host_ip != "0.0.0.0" else ""
        return f"{addr}{self.host_port}:{self.container_port}"

    def __str__(self) -> str:
        ip = self.host_ip or "0.0.0.0"
        return f"{ip}:{self.host_port}->{self.container_port}/{self.protocol}"

    def to_json(self) -> dict[str, Any]:
        """As stored in a container's state."""
        return {
            "host_port": self.host_port,
            "container_port": self.container_port,
            "protocol": self.protocol,
            "host_ip": self.host_ip,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PortMapping:
        """From a container's state."""
        return cls(
            int(obj["host_port"]),
            int(obj["container_port"]),
            str(obj.get("protocol", "tcp")),
            str(obj.get("host_ip", "")),
        )


def allow_low_ports(pid: int) -> None:
    """Let any uid bind ports below 1024 in ``pid``'s network namespace (as Docker does)."""
    nsenter = shutil.which("nsenter")
    if not nsenter:
        raise ToolMissing("nsenter", "util-linux")
    r = subprocess.run(
        [
            nsenter,
            f"--net=/proc/{pid}/ns/net",
            "--",
            "/bin/sh",
            "-c",
            "echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SandboxError(
            f"cannot allow ports below 1024 in the container: {r.stderr.strip()}",
            "run as root, or publish a port above 1023 inside the container",
        )


def start_forwarding(
    pid: int, ports: Sequence[PortMapping], log: Path, *, preexec: Any = None
) -> subprocess.Popen[bytes]:
    """Start pasta on ``pid``'s network namespace; returns once the host ports listen."""
    busy = sorted({p.host_port for p in ports if p.protocol == "tcp"} & listening_ports())
    if busy:
        raise SandboxError(
            f"host port {busy[0]} is already in use",
            "choose another one with -p HOST:CONTAINER (ss -ltnp shows who holds it)",
        )
    tcp = [p.pasta_spec() for p in ports if p.protocol == "tcp"]
    udp = [p.pasta_spec() for p in ports if p.protocol == "udp"]
    args = ["--log-file", str(log), "-t", ",".join(tcp) if tcp else "none"]
    args += ["-u", ",".join(udp) if udp else "none", "-T", "none", "-U", "none"]
    proc = spawn_pasta(pid, args, preexec)
    wanted = {p.host_port for p in ports if p.protocol == "tcp"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
            text = log.read_text(errors="replace") if log.exists() else ""
            raise SandboxError(
                f"pasta could not forward the ports: {(err or text).strip() or 'no reason given'}",
                "is the host port already in use? (ss -ltnp)",
            )
        if wanted <= listening_ports():
            return proc
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise SandboxError(
        "pasta did not open the host ports within 10 s", f"its log, if any, is {log}"
    )


def listening_ports() -> set[int]:
    """TCP ports something listens on in this network namespace."""
    out: set[int] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":
                out.add(int(parts[1].rsplit(":", 1)[1], 16))
    return out
