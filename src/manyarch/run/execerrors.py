"""A program that could not be run, worded as runc words it, with docker's exit statuses.

bwrap reports a failed ``execvp`` as ``bwrap: execvp /usr/local/bin/uvicorn: Exec
format error``; runc says ``exec /usr/local/bin/uvicorn: exec format error``
(the kernel's errno, lower-cased) and, for a foreign architecture, manyarch
adds a hint that names the fix. docker's exit statuses: 126 when the command
cannot be invoked, 127 when it is not found.
"""

from __future__ import annotations

import re

from manyarch.oci.platform import Platform, host_platform
from manyarch.sandbox import emulation

_EXECVP = re.compile(rb"^bwrap: execvp (?P<path>.*): (?P<error>[^\n]*)\n?$")


def emulation_hint(platform: Platform, emulation_on: bool) -> str | None:
    """What to do when the kernel refused a foreign binary (None when it is native)."""
    if emulation.runs_natively(platform):
        return None
    fix = f"manyarch emulation install {platform.architecture}"
    if not emulation_on:
        return (
            f"emulation was turned off for this run; "
            f"{platform} programs need it on this {host_platform()} host ({fix})"
        )
    return f"{platform} programs need emulation on this {host_platform()} host: {fix}"


def reword_exec_error(line: bytes, hint: str | None, seen: list[str]) -> bytes:
    """bwrap's ``execvp`` failure worded as runc words it (other lines unchanged)."""
    m = _EXECVP.match(line)
    if not m:
        return line
    error = m.group("error").decode(errors="replace")
    text = f"exec {m.group('path').decode(errors='replace')}: {error.lower()}\n"
    seen.append(error)
    if hint and error.lower() == "exec format error":
        text += f"hint: {hint}\n"
    return text.encode()


def exec_error_code(error: str) -> int:
    """docker's exit status for a program that could not be run (126, 127), else bwrap's 1."""
    low = error.lower()
    if "no such file" in low or "not found" in low:
        return 127
    if "permission denied" in low or "is a directory" in low:
        return 126
    return 1
