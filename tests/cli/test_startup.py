"""Starting the CLI stays cheap: building the parser imports no heavy library module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manyarch import __version__
from manyarch.cli.main import build_parser, main

#: Modules (and their submodules) that ``--version``, ``--help``, ``ps`` or ``images``
#: must not pay for just to build the parser: each costs tens of milliseconds.
HEAVY = (
    "httpx",
    "rich",
    "manyarch.imagebuild",
    "manyarch.registry.client",
    "manyarch.run.container",
    "manyarch.dockerfile",
)


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (with ``m`` = cli.main)."""
    script = (
        "import json, sys\n"
        "import manyarch.cli.main as m\n"
        f"{code}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "code",
    [
        "m.build_parser()",
        "m.build_parser().format_help()",
        "m.build_parser().parse_args(['ps', '-a'])",
        "m.build_parser().parse_args(['images', '-q'])",
    ],
)
def test_parser_imports_no_heavy_module(code: str) -> None:
    loaded = _loaded_after(code)
    assert "manyarch.cli.build" in loaded  # every command module was registered
    assert _heavy(loaded) == []


def test_heavy_module_is_detected() -> None:
    # the check above would see a command module importing a heavy one at the top
    assert "manyarch.run.container" in _heavy(_loaded_after("import manyarch.run.container"))


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_deferred_flags_are_there_when_used(capsys: pytest.CaptureFixture[str]) -> None:
    from manyarch.baseimage.options import DEFAULT_MIRROR, DEFAULT_SUITE, PRESETS
    from manyarch.imagebuild.cache import DEFAULT_MAX_BYTES
    from manyarch.run.container import DEFAULT_STOP_TIMEOUT

    parser = build_parser()
    base = parser.parse_args(["base"])
    assert (base.suite, base.mirror, base.preset) == (DEFAULT_SUITE, DEFAULT_MIRROR, "minimal")
    assert parser.parse_args(["stop", "c"]).time == DEFAULT_STOP_TIMEOUT
    assert parser.parse_args(["stop", "-t", "3", "c"]).time == 3.0
    base_help = _help(["base"], capsys)
    assert f"--preset {{{','.join(sorted(PRESETS))}}}" in base_help
    assert f"(default {DEFAULT_MIRROR})" in base_help
    stop_help = _help(["stop"], capsys)
    assert "usage: manyarch stop [-h] [-t TIME] [-s SIGNAL] CONTAINER [CONTAINER ...]" in stop_help
    prune_help = _help(["prune"], capsys)
    assert f"(default {DEFAULT_MAX_BYTES // 1024**3}GB)" in prune_help
    assert "--keep-storage SIZE" in prune_help


def test_python_m_version(tmp_path: Path) -> None:
    env = dict(os.environ, MANYARCH_STORE=str(tmp_path / "store"))
    out = subprocess.run(
        [sys.executable, "-m", "manyarch", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"manyarch {__version__}\n"


@pytest.mark.parametrize("args", [["--help"], ["emulation", "status"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(args: list[str]) -> None:
    # `manyarch ... | head -1`: no BrokenPipeError traceback, SIGPIPE's status. With
    # stdout buffered, as in a user's shell: unbuffered, argparse would swallow the
    # failed write of the help and the case would prove nothing.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # nobody will read what the command prints
    try:
        r = subprocess.run(
            [sys.executable, "-m", "manyarch", *args],
            env=env,
            stdout=w_fd,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(w_fd)
    assert (r.returncode, r.stderr) == (141, "")
