"""buildx's flags for the RUN steps' sandboxes: ``--add-host``, ``--shm-size``, ``--ulimit``.

They change where a RUN runs, never what a layer holds: ``--add-host`` lines
in the ``/etc/hosts`` the sandbox shows (BuildKit's own first), ``--shm-size``
the size of ``/dev/shm`` (a tmpfs), ``--ulimit`` the resource limits (set by
``prlimit`` before bubblewrap starts, as docker's names them).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from manyarch.errors import InvalidArgument

#: docker's --ulimit names, which are prlimit(1)'s options too
ULIMITS = frozenset(
    {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc"}
    | {"rss", "rtprio", "rttime", "sigpending", "stack"}
)
#: docker's special --add-host address, 127.0.0.1: the machine itself under
#: ``--network host``; in a RUN step's own network, its own loopback (the host's
#: loopback services are out of reach by design, see docs/security.md)
HOST_GATEWAY = "host-gateway"
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


def parse_add_host(text: str) -> tuple[str, str]:
    """``HOST:IP`` or ``HOST=IP`` (docker's two spellings; ``host-gateway`` allowed)."""
    name, sep, ip = text.partition("=") if "=" in text else text.partition(":")
    ip = ip.strip().removeprefix("[").removesuffix("]")
    if not sep or not name or not ip:
        raise InvalidArgument(f"invalid --add-host {text!r}", "write HOST:IP, e.g. db:10.0.0.5")
    if ip == HOST_GATEWAY:
        return name, "127.0.0.1"
    try:
        ipaddress.ip_address(ip)
    except ValueError as e:
        raise InvalidArgument(f"invalid IP address in --add-host {text!r}") from e
    return name, ip


def parse_size(text: str) -> int:
    """docker's ``RAMInBytes``: ``64m``, ``1g``, ``512k``, bytes (binary units)."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise InvalidArgument(f"invalid size {text!r}", "write e.g. 64m or 1g")
    scale = 1024 ** "bkmgtp".index((m.group(2) or "b").lower())
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class Ulimit:
    """One ``--ulimit NAME=SOFT[:HARD]`` (-1: unlimited)."""

    name: str
    soft: int
    hard: int

    @classmethod
    def parse(cls, text: str) -> Ulimit:
        """docker's spelling."""
        name, sep, value = text.partition("=")
        if not sep or name not in ULIMITS:
            raise InvalidArgument(
                f"invalid --ulimit {text!r}",
                f"write NAME=SOFT[:HARD], NAME one of {sorted(ULIMITS)}",
            )
        soft, _, hard = value.partition(":")
        try:
            s = int(soft)
            h = int(hard) if hard else s
        except ValueError as e:
            raise InvalidArgument(f"invalid --ulimit {text!r}: not a number") from e
        if -1 not in (s, h) and s > h:
            raise InvalidArgument(f"--ulimit {text!r}: the soft limit is above the hard one")
        return cls(name, s, h)

    def prlimit_arg(self) -> str:
        """``--nofile=1024:2048`` (prlimit's spelling)."""

        def one(n: int) -> str:
            return "unlimited" if n < 0 else str(n)

        return f"--{self.name}={one(self.soft)}:{one(self.hard)}"


@dataclass(frozen=True)
class RunFlags:
    """What a build's RUN steps run with besides the Dockerfile."""

    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int | None = None
    ulimits: tuple[Ulimit, ...] = ()

    @classmethod
    def parse(
        cls, add_hosts: tuple[str, ...] = (), shm_size: str | int | None = None,
        ulimits: tuple[str, ...] = (),
    ) -> RunFlags:  # fmt: skip
        """From buildx's spellings."""
        size = parse_size(shm_size) if isinstance(shm_size, str) else shm_size
        return cls(
            tuple(parse_add_host(h) for h in add_hosts),
            size,
            tuple(Ulimit.parse(u) for u in ulimits),
        )

    def hosts(self, hostname: str) -> str:
        """The ``/etc/hosts`` a RUN sees: BuildKit's, then ``--add-host`` s."""
        text = f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        return text + "".join(f"{ip}\t{name}\n" for name, ip in self.extra_hosts)

    def bwrap_args(self) -> list[str]:
        """bubblewrap options: ``/dev/shm`` as a tmpfs of the size asked."""
        if self.shm_size is None:
            return []
        return ["--size", str(self.shm_size), "--tmpfs", "/dev/shm"]
