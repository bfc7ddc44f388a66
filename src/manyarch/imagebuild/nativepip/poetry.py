"""``poetry install`` run for real on the host: the image's poetry in the host's twin python.

Poetry installs with its own rules (the ``installer`` library's RECORD and
scripts, ``INSTALLER`` ``Poetry X``, no byte-code, its download cache in
``~/.cache/pypoetry``, ``pip uninstall`` for a changed version): rather than
copy them, the image's own poetry runs in the host's twin of the image's
Debian python (:func:`.twin.host_twin`), the image's directories mounted at
their paths, as uv lines do. The twin has the host's platform, so only a
lock whose choices cannot depend on it is done this way: every locked
package from PyPI with a pure wheel (``none-any``) and no marker on the
machine; poetry into the system (``POETRY_VIRTUALENVS_CREATE=false``), the
project itself not installed (``--no-root``), no poetry configuration file.
Anything else stays emulated, with the reason.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.imagebuild.hostca import HOST_CA_BUNDLE
from manyarch.imagebuild.nativepip.command import (
    NativePipUnavailable,
    PoetryCommand,
    expand_words,
)
from manyarch.imagebuild.nativepip.target import DEFAULT_PATH, target_facts, which
from manyarch.imagebuild.nativepip.twin import host_twin, run_with_image_dirs, under_mount
from manyarch.sandbox.rootpath import resolve_in_root

#: ``poetry install`` options that change nothing the twin could do differently
_FLAGS = ("--no-root", "--no-interaction", "-n", "--no-ansi", "--quiet", "-q", "--no-plugins")
#: options with a value (group names)
_GROUPS = ("--only", "--with", "--without")
#: what would make the lock's choice the machine's
_MACHINE_MARKERS = ("platform_machine", "platform.machine", "platform_release", "platform_version")


@dataclass
class PoetryJob:
    """``poetry install``, the image's poetry run by the host's twin of the image's python."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[tuple[str, bool]]
    python: str = ""
    wheels: list[Path] = field(default_factory=list)

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """The image's directories poetry reads and writes, mounted at their paths."""
        run_with_image_dirs(self.argv, self.env, self.cwd, self.mounts, rootfs, "poetry install")
        return ["poetry install"]


def _shebang(rootfs: Path, script: str) -> str:
    try:
        with open(resolve_in_root(rootfs, script), "rb") as f:
            first = f.readline(256)
    except OSError:
        return ""
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    return words[0] if len(words) == 1 and words[0].startswith("/") else ""


def check_args(args: list[str]) -> None:
    """Refuse ``poetry install`` options not done natively."""
    i = 0
    while i < len(args):
        a = args[i]
        name = a.split("=", 1)[0]
        if name in _GROUPS:
            i += 1 if "=" in a else 2
            continue
        if a not in _FLAGS:
            raise NativePipUnavailable(f"poetry install {a} is not done natively")
        i += 1
    if "--no-root" not in args:
        raise NativePipUnavailable("poetry install without --no-root installs the project too")


def check_lock(project: Path) -> None:
    """Refuse a lock whose install could depend on the machine that runs poetry."""
    try:
        lock = tomllib.loads((project / "poetry.lock").read_text())
        pyproject = (project / "pyproject.toml").read_text()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise NativePipUnavailable(f"no poetry.lock and pyproject.toml to read ({e})") from e
    text = (project / "poetry.lock").read_text() + pyproject
    if any(m in text for m in _MACHINE_MARKERS):
        raise NativePipUnavailable("poetry.lock or pyproject.toml has a marker on the machine")
    for package in lock.get("package", []):
        name = f"{package.get('name')} {package.get('version')}"
        if package.get("source"):
            raise NativePipUnavailable(f"{name} is not from PyPI")
        wheels = [f["file"] for f in package.get("files", []) if f["file"].endswith(".whl")]
        if not wheels:
            raise NativePipUnavailable(f"{name} has no wheel: poetry would build it")
        arch = [w for w in wheels if not w[:-4].endswith("-none-any")]
        if arch:
            raise NativePipUnavailable(f"poetry would choose among {name}'s wheels by platform")


def prepare_poetry(
    cmd: PoetryCommand, rootfs: Path, env: Mapping[str, str], workdir: str
) -> PoetryJob:
    """``poetry install`` by the image's poetry in the host's twin of its python, or why not."""
    args = expand_words(cmd.args, rootfs, workdir)
    check_args(args)
    if not workdir.strip("/"):
        raise NativePipUnavailable("poetry install in / (its project directory is the image)")
    if env.get("POETRY_VIRTUALENVS_CREATE", "").lower() not in ("false", "0"):
        raise NativePipUnavailable("poetry would make a virtualenv (POETRY_VIRTUALENVS_CREATE)")
    path = env.get("PATH", DEFAULT_PATH)
    script = which(rootfs, cmd.python, path)
    if script is None:
        raise NativePipUnavailable(f"{cmd.python} is not in the image")
    exe = _shebang(rootfs, script)
    if not exe:
        raise NativePipUnavailable(f"{script} is not a script of a python")
    facts = target_facts(rootfs, exe)
    links = host_twin(rootfs, exe, facts)
    home = "/root"
    for conf in (f"{home}/.config/pypoetry", f"{workdir}/poetry.toml"):
        if resolve_in_root(rootfs, conf).exists():
            raise NativePipUnavailable(f"poetry's configuration in {conf}")
    check_lock(resolve_in_root(rootfs, workdir))
    keep = ("POETRY_", "PIP_", "PYTHON")
    run_env = {k: v for k, v in env.items() if k.startswith(keep) or k == "SOURCE_DATE_EPOCH"}
    run_env.update(PATH=path, HOME=home)
    # the host's CAs, as a RUN step trusts them (requests reads its own variable)
    ca = os.environ.get("SSL_CERT_FILE") or str(HOST_CA_BUNDLE)
    if Path(ca).is_file():
        run_env.update(SSL_CERT_FILE=ca, REQUESTS_CA_BUNDLE=ca)
    mounts: list[tuple[str, bool]] = [("/usr/local", True), (home, True), (workdir, True)]
    mounts += [(d, False) for d in facts.site_dirs if not d.startswith("/usr/local/")]
    if links is not None and not under_mount(links, ["/usr/local"]):
        mounts.append((links, False))
    argv = [exe, script, "install", *args]
    return PoetryJob(argv, run_env, workdir, mounts, facts.python_version)
