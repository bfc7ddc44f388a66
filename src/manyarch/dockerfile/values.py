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


_OCTAL_MODE = re.compile(r"^[0-7]{1,4}$")
_CLAUSE = re.compile(r"^([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)$")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")
_SHIFT = {"u": 6, "g": 3, "o": 0}
_SPECIAL = {"u": 0o4000, "g": 0o2000, "o": 0o1000}


def valid_chmod(spec: str) -> bool:
    """Whether ``spec`` is an octal mode or chmod(1)'s symbolic one (``u+x,go-w``)."""
    return bool(_OCTAL_MODE.match(spec)) or all(_CLAUSE.match(c) for c in spec.split(","))


def chmod_mode(spec: str, mode: int, is_dir: bool) -> int:
    """The permission bits ``COPY --chmod=spec`` gives a file of ``mode``, as chmod(1)
    does (a clause without who is for all, the umask ignored, as BuildKit)."""
    if _OCTAL_MODE.match(spec):
        return int(spec, 8)
    for clause in spec.split(","):
        m = _CLAUSE.match(clause)
        if m is None:
            raise ValueError(f"invalid chmod {spec!r}")
        who = m.group(1).replace("a", "ugo") or "ugo"
        for op, perms in _ACTION.findall(m.group(2)):
            if perms in _SHIFT:
                bits = (mode >> _SHIFT[perms]) & 7
            else:
                bits = sum({"r": 4, "w": 2, "x": 1}.get(p, 0) for p in perms)
                if "X" in perms and (is_dir or mode & 0o111):
                    bits |= 1
            value = special = 0
            for c in set(who):
                value |= bits << _SHIFT[c]
                if ("s" in perms and c in "ug") or ("t" in perms and c == "o"):
                    special |= _SPECIAL[c]
            if op == "+":
                mode |= value | special
            elif op == "-":
                mode &= ~(value | special)
            else:
                for c in set(who):
                    mode &= ~((7 << _SHIFT[c]) | (_SPECIAL[c] if c != "o" else 0))
                mode |= value | special
    return mode & 0o7777


def is_url(source: str) -> bool:
    """An ``http://`` or ``https://`` source (BuildKit's ``isURL``), not a Git one."""
    return source.startswith(("http://", "https://")) and not is_git_url(source)


def is_remote(source: str) -> bool:
    """A source ADD fetches: a URL or a Git repository."""
    return is_url(source) or is_git_url(source)


def is_git_url(source: str) -> bool:
    """A Git repository as BuildKit's ``gitutil.ParseGitRef`` tells one: ``git@``,
    ``git://``, or an http(s) URL whose path ends in ``.git`` (a ``#ref`` after it)."""
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    if not source.startswith(("http://", "https://")):
        return False
    return source.split("#", 1)[0].split("?", 1)[0].rstrip("/").endswith(".git")
