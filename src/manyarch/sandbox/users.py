"""Resolve a Dockerfile/OCI ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``)
against a rootfs's own /etc/passwd and /etc/group, never the host's."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from manyarch.errors import SandboxError
from manyarch.sandbox.rootpath import resolve_in_root


@dataclass(frozen=True)
class Ids:
    """A resolved user: uid, gid, home directory and supplementary groups."""

    uid: int
    gid: int
    home: str = "/"
    #: the other groups /etc/group lists the user in (only when no group was given, as runc)
    groups: tuple[int, ...] = ()


#: Largest passwd or group file read (glibc reads any; an image's is a few KiB).
MAX_TABLE = 16 * 2**20
#: Largest id: 2**32 - 1 is (uid_t)-1, "no id", to the kernel.
MAX_ID = 2**32 - 2


def _table(rootfs: Path, name: str) -> list[tuple[int, list[str]]]:
    """The rows of the image's ``/etc/<name>`` (line number, fields); none when missing.

    The path is resolved inside the image (its symlinks lead inside it, never to
    the host's files) and opened without following a last link; anything but a
    regular file (a FIFO would hang the read, a device never end) is refused.
    """
    path = resolve_in_root(rootfs, f"/etc/{name}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SandboxError(
                f"the image's /etc/{name} is not a regular file",
                f"make /etc/{name} in the image a plain file",
            )
        text = f.read(MAX_TABLE + 1).decode("utf-8", "replace")
    if len(text) > MAX_TABLE:
        raise SandboxError(f"the image's /etc/{name} is larger than {MAX_TABLE // 2**20} MiB")
    return [
        (n, line.split(":"))
        for n, line in enumerate(text.splitlines(), 1)
        if line and not line.startswith("#")
    ]


def _id(value: str, what: str, where: str) -> int:
    """A uid or gid field (or ``USER`` value); a clear error when it is not one."""
    if not value.isdigit() or not value.isascii() or int(value) > MAX_ID:
        raise SandboxError(
            f"{where}: {what} {value!r} is not a number from 0 to {MAX_ID}",
            "fix the entry in the image (it is malformed) or give numeric ids",
        )
    return int(value)


def resolve_user(rootfs: Path, spec: str, *, runtime: bool = False) -> Ids:
    """The uid/gid a ``User`` value means in ``rootfs``; raises when a name is unknown.

    A numeric uid /etc/passwd does not list gets that number as its gid, as
    BuildKit's file operations (COPY --chown, WORKDIR) give it; for a process
    (``runtime``) it gets gid 0, as runc gives it.
    """
    if not spec:
        return Ids(0, 0, "/root")
    user, _, group = spec.partition(":")
    numeric = user.isdigit()
    if numeric:
        _id(user, "the user id", "USER")
    if group.isdigit():
        _id(group, "the group id", "USER")
    uid: int | None = None
    gid: int | None = None
    home = "/"
    name = user
    for n, row in _table(rootfs, "passwd"):
        if len(row) >= 6 and (row[0] == user or (numeric and row[2] == user)):
            where = f"the image's /etc/passwd, line {n}"
            uid, gid = _id(row[2], "uid", where), _id(row[3], "gid", where)
            home, name = row[5] or "/", row[0]
            break
    if uid is None:
        if not numeric:
            raise SandboxError(
                f"unable to find user {user}: no matching entries in passwd file",
                "create the user in the image (e.g. RUN useradd) or give a numeric uid",
            )
        uid, gid = int(user), (0 if runtime else int(user))
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for n, row in _table(rootfs, "group"):
                if len(row) >= 3 and row[0] == group:
                    gid = _id(row[2], "gid", f"the image's /etc/group, line {n}")
                    break
            else:
                raise SandboxError(
                    f"unable to find group {group}: no matching entries in group file"
                )
    gid = gid if gid is not None else uid
    extra: tuple[int, ...] = ()
    if not group:
        extra = tuple(
            sorted(
                {
                    int(row[2])
                    for _, row in _table(rootfs, "group")
                    if len(row) >= 4
                    and row[2].isdigit()
                    and int(row[2]) != gid
                    and name in row[3].split(",")
                }
            )
        )
    return Ids(uid, gid, home, extra)
