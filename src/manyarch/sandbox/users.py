"""Resolve a Dockerfile/OCI ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``)
against a rootfs's own /etc/passwd and /etc/group, never the host's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from manyarch.errors import SandboxError


@dataclass(frozen=True)
class Ids:
    """A resolved user: uid, gid, home directory and supplementary groups."""

    uid: int
    gid: int
    home: str = "/"
    #: the other groups /etc/group lists the user in (only when no group was given, as runc)
    groups: tuple[int, ...] = ()


def _table(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: Path, spec: str, *, runtime: bool = False) -> Ids:
    """The uid/gid a ``User`` value means in ``rootfs``; raises when a name is unknown.

    A numeric uid /etc/passwd does not list gets that number as its gid, as
    BuildKit's file operations (COPY --chown, WORKDIR) give it; for a process
    (``runtime``) it gets gid 0, as runc gives it.
    """
    if not spec:
        return Ids(0, 0, "/root")
    user, _, group = spec.partition(":")
    passwd = _table(rootfs / "etc/passwd")
    uid: int | None = None
    gid: int | None = None
    home = "/"
    name = user
    for row in passwd:
        if len(row) >= 6 and (row[0] == user or (user.isdigit() and row[2] == user)):
            uid, gid, home, name = int(row[2]), int(row[3]), row[5] or "/", row[0]
            break
    if uid is None:
        if not user.isdigit():
            raise SandboxError(
                f"unable to find user {user}: no matching entries in passwd file",
                "create the user in the image (e.g. RUN useradd) or give a numeric uid",
            )
        uid, gid = int(user), (0 if runtime else int(user))
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for row in _table(rootfs / "etc/group"):
                if len(row) >= 3 and row[0] == group:
                    gid = int(row[2])
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
                    for row in _table(rootfs / "etc/group")
                    if len(row) >= 4
                    and row[2].isdigit()
                    and int(row[2]) != gid
                    and name in row[3].split(",")
                }
            )
        )
    return Ids(uid, gid, home, extra)
