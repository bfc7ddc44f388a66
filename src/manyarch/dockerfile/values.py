"""Small parsers, as BuildKit and Go have them: Go's path cleaning, a COPY
destination against WORKDIR, durations (HEALTHCHECK), port specs (EXPOSE), signals."""

from __future__ import annotations

import re

_INT = re.compile(r"^[+-]?\d+$")


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: the shortest equivalent slash path."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(comp)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def resolve_dest(workdir: str, dest: str) -> str:
    """An absolute COPY destination; a trailing ``/`` (or ``.``) keeps meaning a directory."""
    if dest in ("", "."):
        dest = "./"
    is_dir = dest.endswith("/") or dest.endswith("/.")
    out = go_clean(dest if dest.startswith("/") else (workdir or "/") + "/" + dest)
    if is_dir and not out.endswith("/"):
        out += "/"
    return out


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds (``1m30s``, ``1.5h``, ``300ms``)."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)


def _port_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports")
    parts = text.split("-")
    if len(parts) > 2 or not all(p.isdecimal() for p in parts):
        raise ValueError(f"invalid port {text!r}")
    start, end = int(parts[0]), int(parts[-1])
    if start > 65535 or end > 65535:
        raise ValueError(f"invalid port {text!r}")
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def parse_port_spec(raw: str) -> list[str]:
    """``80``, ``80/udp``, ``8000-8002`` as ``["80/tcp"]`` etc. (BuildKit's parsePortSpec)."""
    parts = raw.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    port, _, proto = container.partition("/")
    if not port:
        raise ValueError(f"no port specified: {raw}<empty>")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    start, end = _port_range(port)
    if host:
        hstart, hend = _port_range(host)
        if hend - hstart != end - start and end != start:
            raise ValueError(f"invalid ranges specified for container and host Ports: {port} "
                             f"and {host}")  # fmt: skip
    return [f"{p}/{proto}" for p in range(start, end + 1)]


_SIGNAL_NAMES = (
    "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV "
    "STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX"
)
_SIGNALS = frozenset(
    [*_SIGNAL_NAMES.split(" ")]
    + [f"RTMIN+{i}" for i in range(1, 16)]
    + [f"RTMAX-{i}" for i in range(1, 15)]
)


def valid_signal(text: str) -> bool:
    """Whether ``text`` is a signal as moby's ``signal.ParseSignal`` reads it."""
    if _INT.match(text):
        return int(text) > 0
    name = text.upper()
    return (name[3:] if name.startswith("SIG") else name) in _SIGNALS
