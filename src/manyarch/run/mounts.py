"""A container's mounts as docker spells them: ``-v``, ``--mount``, ``--tmpfs``.

Three kinds (docker's ``--mount type=``): ``bind`` (a host path), ``volume`` (a
named directory kept under ``$XDG_DATA_HOME/manyarch/volumes/NAME/_data``, made
on first use and filled from the image's files at its target, as docker fills
an empty volume; ``-v /path`` alone is an anonymous volume) and ``tmpfs``. They
become bubblewrap binds and tmpfs mounts when the container starts.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from manyarch.errors import InvalidArgument, SandboxError
from manyarch.sandbox.rootpath import resolve_in_root
from manyarch.store import data_home, private_data_dir
from manyarch.units import parse_size

_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: A volume's files, as docker lays out /var/lib/docker/volumes/NAME/_data.
DATA = "_data"


def volumes_dir() -> Path:
    """Where named volumes live."""
    return data_home() / "volumes"


@dataclass(frozen=True)
class Mount:
    """One mount of a container (docker's ``HostConfig.Mounts`` entry, in short)."""

    type: str  # bind, volume or tmpfs
    target: str
    source: str = ""  # host path (bind), volume name (volume), "" (tmpfs, anonymous volume)
    readonly: bool = False
    #: tmpfs: size in bytes (0: the kernel's default) and mode
    size: int = 0
    mode: int = 0o1777

    def to_json(self) -> dict[str, Any]:
        """As stored in a container's state."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Mount:
        """From a container's state."""
        return cls(**{k: v for k, v in obj.items() if k in cls.__dataclass_fields__})

    def __str__(self) -> str:
        if self.type == "tmpfs":
            return f"tmpfs:{self.target}"
        return f"{self.source}:{self.target}{':ro' if self.readonly else ''}"


def _target(text: str, flag: str) -> str:
    if not text.startswith("/"):
        raise InvalidArgument(
            f"invalid {flag} target {text!r}: it must be an absolute path in the container",
            f"e.g. {flag} ...:/data",
        )
    if text == "/":
        raise InvalidArgument(f"invalid {flag} target '/': the root cannot be mounted over")
    return text.rstrip("/") or "/"


def _source(text: str, flag: str) -> tuple[str, str]:
    """(kind, source) of ``-v``'s first field: a host path (bind) or a volume name."""
    if text.startswith(("/", ".", "~")):
        path = Path(text).expanduser().absolute()
        return "bind", str(path)
    if not _VOLUME_NAME.match(text):
        raise InvalidArgument(
            f"invalid volume name {text!r} in {flag}",
            "a name uses letters, digits, '_', '.' and '-'; a host path starts with / or .",
        )
    return "volume", text


def parse_volume(text: str) -> Mount:
    """``-v [SOURCE:]TARGET[:ro|rw|z|Z...]``, as docker reads it."""
    parts = text.split(":")
    options: list[str] = []
    if len(parts) >= 2 and all(o in _VOLUME_OPTIONS for o in parts[-1].split(",")):
        options = parts[-1].split(",")
        parts = parts[:-1]
    if len(parts) == 1:
        return Mount("volume", _target(parts[0], "-v"), readonly="ro" in options)
    if len(parts) != 2 or not parts[0]:
        raise InvalidArgument(
            f"invalid volume specification {text!r}",
            "write -v /host/path:/in/container[:ro] or -v NAME:/in/container",
        )
    kind, source = _source(parts[0], "-v")
    return Mount(kind, _target(parts[1], "-v"), source, readonly="ro" in options)


#: -v options: ro/rw, and SELinux labels and propagation, which change nothing here
_VOLUME_OPTIONS = {
    "ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private", "rprivate",
}  # fmt: skip


def parse_mount(text: str) -> Mount:
    """``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]``."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        fields[key] = value.strip() if sep else "true"
    kind = fields.pop("type", "volume")
    target = next((fields.pop(k) for k in ("target", "destination", "dst") if k in fields), "")
    if not target:
        raise InvalidArgument(
            f"invalid --mount {text!r}: no target", "add target=/path/in/container"
        )
    source = next((fields.pop(k) for k in ("source", "src") if k in fields), "")
    readonly = False
    for key in ("readonly", "ro"):
        if key in fields:
            readonly = fields.pop(key).lower() in ("true", "1", "")
    size, mode = 0, 0o1777
    if kind == "tmpfs":
        if source:
            raise InvalidArgument(f"invalid --mount {text!r}: a tmpfs has no source")
        if "tmpfs-size" in fields:
            size = _size(fields.pop("tmpfs-size"), text)
        if "tmpfs-mode" in fields:
            mode = _mode(fields.pop("tmpfs-mode"), text)
    elif kind == "bind":
        if not source:
            raise InvalidArgument(f"invalid --mount {text!r}: a bind needs source=/host/path")
        source = str(Path(source).expanduser().absolute())
        if not Path(source).exists():
            raise InvalidArgument(
                f"invalid --mount {text!r}: bind source path does not exist: {source}",
                "docker's --mount does not create it (-v does)",
            )
    elif kind == "volume":
        if source and not _VOLUME_NAME.match(source):
            raise InvalidArgument(f"invalid volume name {source!r} in --mount")
    else:
        raise InvalidArgument(
            f"--mount type={kind} is not supported",
            "use type=bind, type=volume or type=tmpfs (see 'manyarch run --help')",
        )
    fields.pop("bind-propagation", None)
    fields.pop("volume-nocopy", None)
    if fields:
        raise InvalidArgument(
            f"--mount option {sorted(fields)[0]!r} is not supported",
            "manyarch reads type, source, target, readonly, tmpfs-size and tmpfs-mode",
        )
    return Mount(kind, _target(target, "--mount"), source, readonly, size, mode)


def parse_tmpfs(text: str) -> Mount:
    """``--tmpfs /path[:size=64m,mode=1777,...]``."""
    target, _, opts = text.partition(":")
    size, mode = 0, 0o1777
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key == "size":
            size = _size(value, text)
        elif key == "mode":
            mode = _mode(value, text)
        elif key not in ("rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev"):
            raise InvalidArgument(
                f"--tmpfs option {key!r} is not supported", "manyarch reads size= and mode="
            )
    return Mount(
        "tmpfs", _target(target, "--tmpfs"), readonly="ro" in opts.split(","), size=size, mode=mode
    )


def _size(text: str, where: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid size {text!r} in {where!r}", "e.g. size=64m") from e


def _mode(text: str, where: str) -> int:
    try:
        return int(text, 8)
    except ValueError as e:
        raise InvalidArgument(
            f"invalid mode {text!r} in {where!r}", "an octal mode, e.g. 1777"
        ) from e


def check_targets(mounts: Sequence[Mount]) -> None:
    """Two mounts on one target are refused, as docker refuses them."""
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise InvalidArgument(f"duplicate mount point: {m.target}")
        seen.add(m.target)


def with_anonymous_names(mounts: Sequence[Mount]) -> list[Mount]:
    """Name the anonymous volumes (``-v /data``) as docker does: 64 hex digits."""
    return [
        Mount(m.type, m.target, secrets.token_hex(32), m.readonly, m.size, m.mode)
        if m.type == "volume" and not m.source
        else m
        for m in mounts
    ]


def volume_path(name: str) -> Path:
    """The directory a named volume's files are in."""
    return volumes_dir() / name / DATA


def prepare_volume(name: str, image_root: Path, target: str) -> Path:
    """The volume's directory; a new one gets the image's files at ``target`` (as docker's)."""
    path = volume_path(name)
    if path.is_dir():
        return path
    tmp = path.with_name(f".{DATA}-{secrets.token_hex(4)}")
    private_data_dir(volumes_dir().name)
    tmp.mkdir(parents=True)
    try:
        try:
            src = resolve_in_root(image_root, target)
        except SandboxError:
            src = None
        if src is not None and src.is_dir() and not src.is_symlink():
            r = subprocess.run(
                ["cp", "-a", "--reflink=auto", f"{src}/.", str(tmp)], capture_output=True, text=True
            )
            if r.returncode != 0:
                raise SandboxError(f"cannot fill volume {name} from the image: {r.stderr.strip()}")
            shutil.copystat(src, tmp)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def list_volumes() -> list[str]:
    """Names of the volumes kept."""
    root = volumes_dir()
    return sorted(p.name for p in root.iterdir() if (p / DATA).is_dir()) if root.is_dir() else []


def remove_volume(name: str) -> None:
    """Delete a volume and its files."""
    shutil.rmtree(volumes_dir() / name, ignore_errors=True)
