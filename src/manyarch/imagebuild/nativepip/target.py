"""The target interpreter's facts: its tags, markers and install schemes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manyarch.imagebuild.nativepip.command import NativePipUnavailable, is_pip
from manyarch.sandbox.rootpath import resolve_in_root

#: Bump when the facts' shape changes, so old cache entries are ignored.
_FACTS_VERSION = 1

_PROBE = r"""
import json, sys
import pip
from pip._internal.locations import get_scheme
from pip._internal.utils.compatibility_tags import get_supported
from pip._vendor.packaging.markers import default_environment
def scheme(**kw):
    s = get_scheme("@DIST@", **kw)
    return {k: getattr(s, k) for k in ("purelib", "platlib", "headers", "scripts", "data")}
print(json.dumps({
    "version": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "executable": sys.executable,
    "path": [p for p in sys.path if p],
    "tags": [str(t) for t in get_supported()],
    "markers": default_environment(),
    "pip_version": pip.__version__,
    "scheme": scheme(),
    "user_scheme": scheme(user=True),
    "prefix_scheme": scheme(prefix="/@PREFIX@"),
}))
"""


@dataclass(frozen=True)
class TargetFacts:
    """What the target interpreter told about itself (asked once, under emulation)."""

    version: tuple[int, int, int]
    implementation: str
    executable: str
    path: tuple[str, ...]
    tags: tuple[str, ...]
    markers: Mapping[str, str]
    pip_version: str
    scheme: Mapping[str, str]
    user_scheme: Mapping[str, str]
    prefix_scheme: Mapping[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetFacts:
        """Read the probe's JSON."""
        v = data["version"]
        return cls(
            version=(int(v[0]), int(v[1]), int(v[2])),
            implementation=str(data["implementation"]),
            executable=str(data["executable"]),
            path=tuple(data["path"]),
            tags=tuple(data["tags"]),
            markers=dict(data["markers"]),
            pip_version=str(data["pip_version"]),
            scheme=dict(data["scheme"]),
            user_scheme=dict(data["user_scheme"]),
            prefix_scheme=dict(data["prefix_scheme"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON :meth:`from_json` reads."""
        return {
            "version": list(self.version),
            "implementation": self.implementation,
            "executable": self.executable,
            "path": list(self.path),
            "tags": list(self.tags),
            "markers": dict(self.markers),
            "pip_version": self.pip_version,
            "scheme": dict(self.scheme),
            "user_scheme": dict(self.user_scheme),
            "prefix_scheme": dict(self.prefix_scheme),
        }

    @property
    def python_version(self) -> str:
        """``3.11.2``."""
        return ".".join(map(str, self.version))


def interpreter_path(rootfs: Path, command: str, env_path: str) -> str | None:
    """The absolute path (in the image) of the interpreter ``command`` runs.

    For ``pip``/``pip3`` it is the interpreter of the script's shebang.
    """
    exe = _which(rootfs, command, env_path)
    if exe is None:
        return None
    if is_pip(Path(command).name):
        try:
            with open(resolve_in_root(rootfs, exe), "rb") as f:
                first = f.readline(256)
        except OSError:
            return None
        if not first.startswith(b"#!"):
            return None
        words = first[2:].decode(errors="replace").split()
        if not words or not words[0].startswith("/") or len(words) > 1:
            return None
        return words[0]
    return exe


def _which(rootfs: Path, command: str, env_path: str) -> str | None:
    if "/" in command:
        return command if resolve_in_root(rootfs, command).is_file() else None
    for d in env_path.split(":"):
        if d.startswith("/") and resolve_in_root(rootfs, f"{d}/{command}").is_file():
            return f"{d.rstrip('/')}/{command}"
    return None


def file_digest(path: Path) -> str:
    """sha256 hex of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def target_facts(rootfs: Path, interpreter: str, *, base_key: str, cache_dir: Path) -> TargetFacts:
    """The facts of ``interpreter`` in ``rootfs``: from the cache, else asked under emulation.

    The key is the base image's digest and the interpreter binary's digest, so
    a stage that replaced its python asks again.
    """
    real = resolve_in_root(rootfs, interpreter)
    if not real.is_file():
        raise NativePipUnavailable(f"{interpreter} is not in the image")
    key = hashlib.sha256(
        f"{_FACTS_VERSION}\0{base_key}\0{interpreter}\0{file_digest(real)}".encode()
    ).hexdigest()
    path = cache_dir / "pyfacts" / f"{key}.json"
    try:
        return TargetFacts.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        pass
    facts = probe(rootfs, interpreter)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(facts.to_json()))
    os.replace(tmp, path)
    return facts


def probe(rootfs: Path, interpreter: str) -> TargetFacts:
    """Run the probe in the rootfs (emulated for a foreign architecture)."""
    from manyarch.sandbox.bwrap import SandboxSpec, run

    spec = SandboxSpec(
        rootfs=rootfs,
        argv=[interpreter, "-I", "-c", _PROBE],
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        network="none",
    )
    r = run(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise NativePipUnavailable(
            f"{interpreter} in the image has no usable pip ({err[-1] if err else r.returncode})"
        )
    return TargetFacts.from_json(json.loads(r.stdout))
