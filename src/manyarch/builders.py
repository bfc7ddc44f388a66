"""Builder instances, as ``docker buildx create`` names them: no daemon, just settings.

buildx keeps a buildkitd.toml per builder (``create --config``) and a current
builder (``--use``); the seed makes its registry plain http that way. manyarch
has no daemon to start, so a builder is a name, the driver asked for (noted
only), and a copy of that buildkitd.toml, which every registry access then
reads with the usual ones. They live in ``$XDG_CONFIG_HOME/manyarch/builders``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from manyarch.errors import InvalidArgument, InvalidInput, NotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONFIG = "buildkitd.toml"
META = "builder.json"
CURRENT = "current"


def builders_dir() -> Path:
    """``$XDG_CONFIG_HOME/manyarch/builders`` (``~/.config/...`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "manyarch" / "builders"


@dataclass(frozen=True)
class Builder:
    """A named builder: its driver (noted only) and its buildkitd.toml, if it was given one."""

    name: str
    driver: str = "docker-container"

    @property
    def directory(self) -> Path:
        """Where it is kept."""
        return builders_dir() / self.name

    @property
    def config(self) -> Path | None:
        """Its copy of the buildkitd.toml given to ``create --config``."""
        path = self.directory / CONFIG
        return path if path.is_file() else None


def create(
    name: str | None = None,
    *,
    driver: str = "docker-container",
    config: Path | None = None,
    use: bool = False,
) -> Builder:
    """Record a builder (refused when the name is taken); with ``use`` it becomes current."""
    name = name or f"builder-{secrets.token_hex(4)}"
    if not _NAME.match(name):
        raise InvalidArgument(
            f"invalid builder name {name!r}", "use letters, digits, '_', '.' and '-'"
        )
    builder = Builder(name, driver)
    if builder.directory.exists():
        raise InvalidArgument(f'existing instance for "{name}"', "remove it first")
    data = None
    if config is not None:
        try:
            data = config.read_bytes()
            tomllib.loads(data.decode("utf-8"))
        except OSError as e:
            raise InvalidInput(f"cannot read {config}: {e.strerror}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InvalidInput(f"{config} is not valid TOML: {e}") from e
    tmp = builders_dir() / f".{name}.{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        if data is not None:
            (tmp / CONFIG).write_bytes(data)
        (tmp / META).write_text(json.dumps({"name": name, "driver": driver}) + "\n")
        tmp.rename(builder.directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if use:
        select(name)
    return builder


def find(name: str) -> Builder | None:
    """The builder called ``name``, None when there is none."""
    if not _NAME.match(name):
        return None
    try:
        meta = json.loads((builders_dir() / name / META).read_text())
    except (OSError, ValueError):
        return None
    return Builder(name, str(meta.get("driver", "docker-container")))


def select(name: str) -> None:
    """Make ``name`` the current builder."""
    if find(name) is None:
        raise NotFound(f"no builder {name!r} found", "create it first")
    path = builders_dir() / CURRENT
    tmp = path.with_name(f".{CURRENT}.{os.getpid()}")
    tmp.write_text(name + "\n")
    tmp.replace(path)


def current() -> Builder | None:
    """The builder ``create --use`` chose last, if it still exists."""
    try:
        name = (builders_dir() / CURRENT).read_text().strip()
    except OSError:
        return None
    return find(name)


def remove(name: str) -> None:
    """Forget the builder ``name`` (and stop using it)."""
    builder = find(name)
    if builder is None:
        raise NotFound(f"no builder {name!r} found")
    cur = current()
    if cur is not None and cur.name == name:
        (builders_dir() / CURRENT).unlink(missing_ok=True)
    shutil.rmtree(builder.directory)
