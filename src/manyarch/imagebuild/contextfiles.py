"""The build's own files in its context (the Dockerfile, .dockerignore), read as a
hostile context cannot abuse them.

A cloned repository is untrusted input: its ``Dockerfile`` may be a symlink to
``/etc/shadow`` (the parser's errors quote lines: they would print the host's
secrets), a FIFO (the read never ends), or not UTF-8 text. Each is refused with
an error naming the file, never a traceback and never a line of a file outside
the context. A Dockerfile named with ``-f`` outside the context is the user's
own choice and is read as it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from manyarch.errors import DockerfileError


def _inside(parent: Path, child: Path) -> bool:
    return child == parent or parent in child.parents


def read_context_text(context: Path, path: Path, *, missing_ok: bool = False) -> str | None:
    """The text of ``path``; None when it is missing and ``missing_ok``.

    A path in the context (as written) must stay in it once its symlinks are
    followed; it must be a regular file of UTF-8 text.
    """
    where = str(path)
    ctx = Path(os.path.abspath(context))
    if _inside(ctx, Path(os.path.abspath(path))) and not _inside(ctx.resolve(), path.resolve()):
        raise DockerfileError(
            "is a symbolic link that leads out of the build context",
            file=where,
            line=None,
            hint="put the file itself in the context, or name a file outside it with -f",
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        if missing_ok:
            return None
        raise DockerfileError(
            "no such file", file=where, line=None, hint="check the Dockerfile's path"
        ) from e
    except OSError as e:
        raise DockerfileError(f"cannot read it: {e.strerror or e}", file=where, line=None) from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DockerfileError("is not a regular file", file=where, line=None)
        try:
            data = f.read()
        except OSError as e:
            raise DockerfileError(
                f"cannot read it: {e.strerror or e}", file=where, line=None
            ) from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DockerfileError(
            f"is not UTF-8 text (byte 0x{data[e.start]:02x})",
            file=where,
            line=line,
            hint="save the file as UTF-8",
        ) from e
