"""Docker's default seccomp profile as a BPF program for bubblewrap's ``--seccomp``.

``seccomp_default.json`` is moby's ``profiles/seccomp/default.json`` as
published (Apache-2.0, github.com/moby/profiles), unchanged. :func:`rules`
reads it as moby's ``setupSeccomp`` does: a rule counts when the host's
architecture and every capability it ``includes`` are there (the sandbox's
bounding set), and none it ``excludes``; a minimum kernel is checked;
conditions on distinct arguments of one rule are ANDed, several on the same
argument become separate rules (runc's ``matchCall``). libseccomp's own
Python bindings (Debian's ``python3-seccomp``, run by the interpreter that has
them, usually ``/usr/bin/python3``) compile the result; nothing here writes
BPF by hand. The program is exported once per distinct rule set and kept
under ``$XDG_CACHE_HOME/manyarch/seccomp/<sha256>.bpf``.

QEMU user-mode makes the host's system calls for an emulated program, so the
filter is always the host architecture's (with its compat ABIs: x86 and x32
beside x86_64, as the profile's ``archMap`` says).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from manyarch.errors import SandboxError, ToolMissing

#: Go's GOARCH for the host (the profile's ``arches`` use it).
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM"}

#: Run by an interpreter with libseccomp's bindings: rules (JSON) in, BPF out.
_COMPILER = r"""
import json, sys, seccomp
spec = json.load(sys.stdin)
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(spec["default_errno"]))
try:
    f.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)  # a binary tree: fewer jumps per system call
except Exception:
    pass
for name in spec["arches"]:
    arch = getattr(seccomp.Arch, name.removeprefix("SCMP_ARCH_"), None)
    if arch is not None:
        try:
            f.add_arch(arch)
        except Exception:
            pass
ops = {n: getattr(seccomp, n.removeprefix("SCMP_CMP_")) for n in (
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")}
for rule in spec["rules"]:
    act = seccomp.ALLOW if rule["errno"] is None else seccomp.ERRNO(rule["errno"])
    for name in rule["names"]:
        for conds in rule["conditions"]:
            args = [seccomp.Arg(i, ops[op], a, b) for i, op, a, b in conds]
            try:
                f.add_rule(act, name, *args)
            except Exception:
                pass  # a name this libseccomp or architecture does not know
f.export_bpf(sys.stdout)
"""


def profile() -> dict[str, Any]:
    """moby's default profile, as vendored."""
    text = resources.files("manyarch.sandbox").joinpath("seccomp_default.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _kernel() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _applies(
    call: dict[str, Any], arch: str, caps: frozenset[str], kernel: tuple[int, int]
) -> bool:
    exc, inc = call.get("excludes") or {}, call.get("includes") or {}
    if arch in (exc.get("arches") or ()) or any(c in caps for c in exc.get("caps") or ()):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("minKernel"):
        major, _, minor = str(inc["minKernel"]).partition(".")
        if kernel < (int(major), int(minor or 0)):
            return False
    return True


def _conditions(args: list[dict[str, Any]]) -> list[list[tuple[int, str, int, int]]]:
    conds = [
        (int(a["index"]), str(a["op"]), int(a["value"]), int(a.get("valueTwo", 0))) for a in args
    ]
    if not conds:
        return [[]]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conds]  # runc: the same argument twice means either
    return [conds]


def rules(
    caps: Iterable[str], *, arch: str | None = None, kernel: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The rules that apply to a sandbox with bounding set ``caps`` on this host."""
    data = profile()
    arch = arch or _GOARCH.get(platform.machine(), platform.machine())
    kernel = kernel or _kernel()
    capset = frozenset(caps)
    native = _SCMP_ARCH.get(arch, "")
    arches = [
        sub
        for entry in data.get("archMap") or ()
        if entry["architecture"] == native
        for sub in entry.get("subArchitectures") or ()
    ]
    default_errno = int(data.get("defaultErrnoRet", 1))
    out = []
    for call in data["syscalls"]:
        if not _applies(call, arch, capset, kernel):
            continue
        action = call["action"]
        if action not in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"):
            raise SandboxError(f"seccomp action {action} is not supported")
        errno = None if action == "SCMP_ACT_ALLOW" else int(call.get("errnoRet", default_errno))
        out.append(
            {
                "names": call["names"],
                "errno": errno,
                "conditions": _conditions(call.get("args") or []),
            }
        )
    return {"default_errno": default_errno, "arches": arches, "rules": out}


@functools.cache
def _compiler_python() -> str:
    """An interpreter that can import libseccomp's bindings (this one, else the system's)."""
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if (
            candidate
            and subprocess.run([candidate, "-c", "import seccomp"], capture_output=True).returncode
            == 0
        ):
            return candidate
    raise ToolMissing("python3-seccomp", "python3-seccomp")


def cache_dir() -> Path:
    """Where compiled filters are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "manyarch" / "seccomp"


def compiled(caps: Iterable[str]) -> Path:
    """The BPF program for a sandbox with bounding set ``caps`` (compiled once, cached)."""
    spec = json.dumps(rules(caps), sort_keys=True).encode()
    path = cache_dir() / f"{hashlib.sha256(spec).hexdigest()}.bpf"
    if path.exists():
        return path
    r = subprocess.run([_compiler_python(), "-c", _COMPILER], input=spec, capture_output=True)
    if r.returncode != 0 or not r.stdout:
        raise SandboxError(
            "cannot compile the seccomp filter: " + r.stderr.decode(errors="replace").strip()[-400:]
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(r.stdout)
    os.replace(tmp, path)
    return path


def open_filter(caps: Iterable[str]) -> int:
    """A file descriptor on the filter for bwrap's ``--seccomp`` (the caller closes it)."""
    return os.open(compiled(caps), os.O_RDONLY | os.O_CLOEXEC)
