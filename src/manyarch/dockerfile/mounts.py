"""``RUN --mount``: BuildKit's mount spellings, checks and defaults (pure).

Follows BuildKit's ``instructions/commands_runmount.go`` (the fields, their
checks) and ``dockerfile2llb/convert_runmount.go``, ``convert_secrets.go``,
``convert_ssh.go`` (the defaults: a cache's id is its target, a secret's
target ``/run/secrets/<id>``, a relative target is under WORKDIR).
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING = ("shared", "private", "locked")
_KEYS = frozenset(
    {"type", "from", "source", "src", "target", "dst", "destination", "readonly", "ro",
     "readwrite", "rw", "id", "sharing", "required", "size", "mode", "uid", "gid", "env"}
)  # fmt: skip
_RAM = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)
_TRUE = {"1", "t", "true", "TRUE", "True"}
_FALSE = {"0", "f", "false", "FALSE", "False"}


class MountError(ValueError):
    """A ``--mount`` value BuildKit would refuse (the message is BuildKit's)."""


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount``, its defaults applied (``from_`` resolved by the planner:
    ``"stage:<i>"``, an image reference, or None for the context / an empty cache)."""

    type: str
    target: str
    source: str = ""
    from_: str | None = None
    readonly: bool = True
    size: int | None = None
    id: str = ""
    sharing: str = "shared"
    required: bool = False
    env: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def _bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise MountError(f"invalid value for {key}: {value}")


def _uint(key: str, value: str, base: int) -> int:
    try:
        n = int(value, base)
    except ValueError as e:
        raise MountError(f"invalid value {value} for {key}") from e
    if n < 0 or n >= 1 << 32:
        raise MountError(f"invalid value {value} for {key}")
    return n


def _size(value: str) -> int:
    # go-units' RAMInBytes: binary units, an optional b/ib suffix
    m = _RAM.match(value.strip())
    if m is None:
        raise MountError(f"invalid value for size: {value}")
    return int(float(m.group(1)) * 1024 ** "bkmgtp".index((m.group(2) or "b").lower()))


def raw_from(value: str) -> str | None:
    """The ``from=`` of a ``--mount`` value as written (for the stage graph), or None."""
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration):
        return None
    for f in fields:
        key, eq, v = f.partition("=")
        if eq and key.lower() == "from":
            return v
    return None


def parse_mount(value: str, expand: Callable[[str], str], workdir: str) -> Mount:
    """A ``--mount`` value, its values expanded (all but ``from``), defaults applied."""
    try:
        fields = next(csv.reader([value], strict=True))
    except (csv.Error, StopIteration) as e:
        raise MountError(f"failed to parse csv mounts: {e}") from e
    kw: dict[str, Any] = {"type": "bind"}
    for f in fields:
        key, eq, v = f.partition("=")
        key = key.lower()
        if not eq:
            _flag(kw, key, f)
            continue
        if key not in _KEYS:
            raise MountError(f"unexpected key '{key}' in '{f}'")
        if key == "from" and "$" in v[:-1]:
            raise MountError(
                f"'{key}' doesn't support variable expansion, define alias stage instead"
            )
        _field(kw, key, v if key == "from" else expand(v))
    mtype = kw.pop("type")
    if mtype not in ("secret", "ssh", "cache"):
        for k in ("mode", "uid", "gid"):
            if k in kw:
                raise MountError(f"{k} not allowed for {mtype!r} type mounts")
    if kw.pop("ro_auto", True):
        kw["readonly"] = mtype not in ("cache", "tmpfs")
    if "sharing" in kw and mtype != "cache":
        raise MountError(f"invalid cache sharing set for {mtype} mount")
    target, src, cid = str(kw.pop("target", "")), kw.pop("source", ""), kw.pop("id", "")
    if mtype == "secret":
        return _secret(kw, src, cid, target, workdir)
    if mtype == "ssh":
        if src:
            raise MountError("ssh does not support source")
        return Mount("ssh", _target(target, workdir) if target else "", id=cid or "default", **kw)
    if not target:
        raise MountError("mount target is required")  # BuildKit: "invalid mount target"
    if mtype == "cache" and not cid:
        cid = posixpath.normpath(target)
    return Mount(mtype, _target(target, workdir), source=src, id=cid, **kw)


def _flag(kw: dict[str, Any], key: str, field: str) -> None:
    """A field without ``=``: ``ro``, ``rw``, ``required``."""
    if key in ("readonly", "ro", "readwrite", "rw"):
        kw["readonly"], kw["ro_auto"] = key in ("readonly", "ro"), False
    elif key == "required" and kw["type"] in ("secret", "ssh"):
        kw["required"] = True
    elif key == "required":
        raise MountError(f"unexpected key '{key}' for mount type '{kw['type']}'")
    else:
        raise MountError(f"invalid field '{field}' must be a key=value pair")


def _field(kw: dict[str, Any], key: str, v: str) -> None:
    """One ``key=value``, as BuildKit's parseMount reads it."""
    mtype = kw["type"]
    if key == "type":
        if v.lower() not in MOUNT_TYPES:
            raise MountError(f'unsupported mount type "{v}"')
        kw["type"] = v.lower()
    elif key in ("from", "id", "env"):
        kw["from_" if key == "from" else key] = v
    elif key in ("source", "src"):
        kw["source"] = v
    elif key in ("target", "dst", "destination"):
        kw["target"] = v
    elif key in ("readonly", "ro", "readwrite", "rw"):
        kw["readonly"] = _bool(key, v) == (key in ("readonly", "ro"))
        kw["ro_auto"] = False
    elif key in ("required", "size"):
        if mtype not in (("tmpfs",) if key == "size" else ("secret", "ssh")):
            raise MountError(f"unexpected key '{key}' for mount type '{mtype}'")
        kw[key] = _size(v) if key == "size" else _bool(key, v)
    elif key == "sharing":
        if v.lower() not in SHARING:
            raise MountError(f'unsupported sharing value "{v}"')
        kw["sharing"] = v.lower()
    else:  # mode (octal), uid, gid
        kw[key] = _uint(key, v, 8 if key == "mode" else 10)


def _target(target: str, workdir: str) -> str:
    path = posixpath.normpath(posixpath.join("/", workdir or "/", target))
    if path == "/":
        raise MountError(f"invalid mount target {target!r}")
    return path


def _secret(kw: dict[str, Any], src: str, cid: str, target: str, workdir: str) -> Mount:
    if "from_" in kw:
        raise MountError("secret mount should not have a from")
    if not (src or target or cid):
        raise MountError("invalid secret mount. one of source, target required")
    if src and cid:
        raise MountError("both source and id can't be set")
    sid = src or cid or posixpath.basename(target)
    if kw.get("env") is None and not target:
        target = "/run/secrets/" + posixpath.basename(sid)
    if target:
        target = _target(target, workdir)
    return Mount("secret", target, id=sid, **kw)


def plan_mounts(
    values: Sequence[str], froms: Sequence[str | None], expand: Callable[[str], str], workdir: str
) -> tuple[Mount, ...]:
    """A RUN's ``--mount`` values, with their ``from=`` as the planner resolved them."""
    out = []
    for value, src in zip(values, froms, strict=True):
        try:
            m = parse_mount(value, expand, workdir)
        except MountError as e:
            raise MountError(f"{value}: {e}") from e
        out.append(replace(m, from_=src))
    return tuple(out)
