"""buildx's ``--secret`` and ``--ssh``: what ``RUN --mount=type=secret|ssh`` receives.

A secret is read when a step mounts it, never earlier, and goes nowhere but
that step's sandbox: not a layer, not the build cache's keys, not the history,
not the progress output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from manyarch.errors import InvalidArgument


@dataclass(frozen=True)
class SecretSource:
    """Where ``--secret id=...`` takes its value: a file or an environment variable."""

    id: str
    file: Path | None = None
    env: str | None = None

    @classmethod
    def parse(cls, text: str) -> SecretSource:
        """buildx's ``id=ID[,src=PATH|,env=VAR][,type=file|env]``; ``id`` alone: the
        variable of that name if set, else the file."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise InvalidArgument(f"invalid --secret {text!r}: {part!r} is not KEY=VALUE",
                                      "write id=ID,src=PATH or id=ID,env=VAR")  # fmt: skip
            key = {"source": "src", "required": "required"}.get(key.lower(), key.lower())
            if key not in ("id", "src", "env", "type"):
                raise InvalidArgument(f"invalid --secret {text!r}: unexpected key {key!r}")
            fields[key] = value
        typ = fields.get("type")
        sid = fields.get("id") or ""
        src, env = fields.get("src"), fields.get("env")
        if typ not in (None, "file", "env"):
            raise InvalidArgument(f"invalid --secret {text!r}: type is file or env")
        if typ == "env" and src and not env:
            env, src = src, None
        sid = sid or (Path(src).name if src else env or "")
        if not sid:
            raise InvalidArgument(f"invalid --secret {text!r}: no id", "write id=ID,src=PATH")
        if src is None and env is None:
            if typ == "file" or (typ is None and sid not in os.environ):
                src = sid
            else:
                env = sid
        return cls(sid, Path(src).expanduser() if src is not None else None, env)

    def read(self) -> bytes | None:
        """The secret's value, or None when its file or variable is missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            return value.encode() if value is not None else None
        assert self.file is not None
        try:
            return self.file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise InvalidArgument(f"cannot read secret {self.id!r}: {e.strerror}") from e


def parse_ssh(text: str) -> tuple[str, Path]:
    """buildx's ``--ssh default`` (``$SSH_AUTH_SOCK``) or ``--ssh ID=SOCKET``."""
    sid, eq, path = text.partition("=")
    if not eq:
        sock = os.environ.get("SSH_AUTH_SOCK")
        if not sock:
            raise InvalidArgument(
                f"--ssh {text}: SSH_AUTH_SOCK is not set", "start an ssh-agent or write ID=SOCKET"
            )
        return sid, Path(sock)
    first = path.split(",")[0]
    p = Path(first).expanduser()
    if p.exists() and not p.is_socket():
        raise InvalidArgument(
            f"--ssh {text}: {first} is not an agent socket",
            "manyarch forwards an ssh-agent's socket; load the key with ssh-add",
        )
    return sid, p
