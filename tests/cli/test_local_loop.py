"""The local loop as docker users live it, against the real sandbox: volumes, names, an init,
restarts, limits, health, exec, a terminal, docker's exit statuses and scripting flags.

Containers run the tiny dash+coreutils base (amd64, and arm64 under QEMU where it matters)
and the seed's demo image (uvicorn under QEMU: the init makes it stop).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_run_demo import BINFMT_ARM64, get_arch
from tests.helpers.cli import manyarch
from tests.helpers.demo_image import DemoImage
from tests.helpers.registry_server import free_port
from tests.helpers.tiny_base import TinyBase, tiny_base

__all__ = ["tiny_base"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers are tested as root"),
]


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data home for the module: unpacked trees are shared."""
    return tmp_path_factory.mktemp("loop-data")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the module (the tests name their images apart)."""
    return tmp_path_factory.mktemp("loop-store")


@pytest.fixture
def env(data_home: Path, store: Path) -> Iterator[dict[str, str]]:
    e = dict(os.environ, MANYARCH_STORE=str(store), XDG_DATA_HOME=str(data_home))
    yield e
    d = data_home / "manyarch" / "containers"
    for c in sorted(d.iterdir()) if d.is_dir() else []:
        state = json.loads((c / "state.json").read_text())
        manyarch(e, "rm", "-f", state["name"])


@pytest.fixture
def tiny(tiny_base: TinyBase, env: dict[str, str]) -> str:
    """The tiny base, pulled for the host (arm64 is asked with --platform)."""
    r = manyarch(env, "pull", "-q", tiny_base.ref)
    assert r.returncode == 0, r.stderr
    return tiny_base.ref


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def inspect(env: dict[str, str], name: str) -> dict[str, object]:
    r = manyarch(env, "inspect", name)
    assert r.returncode == 0, r.stderr
    [obj] = json.loads(r.stdout)
    assert isinstance(obj, dict)
    return obj


# -- the init ------------------------------------------------------------------------


def test_the_arm64_demo_stops_on_sigterm_as_under_docker_init(
    demo_image: DemoImage, env: dict[str, str]
) -> None:
    if not BINFMT_ARM64.exists():
        pytest.skip("no arm64 emulation handler registered")
    port = free_port()
    r = manyarch(
        env, "run", "-d", "--name", "arm", "--platform", "linux/arm64", "-p", f"{port}:80",
        demo_image.ref,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert get_arch(port, 120) == {"architecture": "aarch64"}
    assert inspect(env, "arm")["HostConfig"]["Init"] is True  # type: ignore[index]
    began = time.monotonic()
    assert manyarch(env, "stop", "arm").returncode == 0
    # well before the 10 s after which stop kills: the SIGTERM reached uvicorn (~1 s on a
    # quiet machine; the CLI's start and the supervisor's tidying are in the figure)
    assert time.monotonic() - began < 5.0
    # uvicorn re-raises SIGTERM: as tini's child it dies of it, 128 + 15
    r = manyarch(env, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "arm")
    assert r.stdout.split() == ["exited", "143"]
    # a program signalling itself, and a foreground run sent one SIGTERM, end too
    r = manyarch(
        env, "run", "--rm", "--platform", "linux/arm64", demo_image.ref,
        "python3", "-c", "import signal; signal.raise_signal(signal.SIGTERM)", timeout=120,
    )  # fmt: skip
    assert r.returncode == 143, r.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "manyarch", "run", "--rm", "--platform", "linux/arm64", "-p",
         f"{port}:80", demo_image.ref],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert get_arch(port, 120) == {"architecture": "aarch64"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
    finally:
        if proc.poll() is None:
            proc.kill()


def test_init_on_request_for_a_native_image_and_off_by_default(
    tiny: str, env: dict[str, str]
) -> None:
    r = manyarch(env, "run", "--rm", "--init", tiny, "cat", "/proc/1/cmdline")
    assert r.stdout.split("\0")[:2] == ["/sbin/docker-init", "--"], r.stderr
    r = manyarch(env, "run", "--rm", tiny, "cat", "/proc/1/cmdline")
    assert r.stdout.split("\0")[0] == "/bin/cat"  # looked up in PATH, as runc does


# -- mounts, names, working directory ----------------------------------------------------


def test_volumes_binds_tmpfs_read_only_hostname_hosts_and_workdir(
    tiny: str, env: dict[str, str], tmp_path: Path, data_home: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from the host\n")
    script = (
        "cat /in/in.txt; cat /etc/hostname; cat /etc/hosts | tail -2; pwd; "
        "echo kept > /vol/file; echo out > /out/file; "
        "touch /in/nope 2>/dev/null || echo ro-bind; touch /root/nope 2>/dev/null || echo ro-root; "
        "echo t > /scratch/t && echo tmpfs-ok; cat /proc/mounts | cut -d' ' -f2,3 | "
        "while read p t; do [ $p = /scratch ] && echo $t; done; true"
    )
    r = manyarch(
        env, "run", "--rm", "-h", "box", "--add-host", "db:10.1.2.3", "-w", "/new/work/dir",
        "-v", f"{host}:/in:ro", "-v", "loopvol:/vol", "--mount",
        f"type=bind,source={tmp_path},target=/out", "--tmpfs", "/scratch:size=1m",
        "--read-only", tiny, "sh", "-c", script,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "from the host",
        "box",
        "10.1.2.3\tdb",
        "127.0.1.1\tbox",
        "/new/work/dir",
        "ro-bind",
        "ro-root",
        "tmpfs-ok",
        "tmpfs",
    ]
    assert (tmp_path / "file").read_text() == "out\n"
    volume = data_home / "manyarch" / "volumes" / "loopvol" / "_data"
    assert (volume / "file").read_text() == "kept\n"
    # a named volume outlives its container, and the next one sees it
    r = manyarch(env, "run", "--rm", "-v", "loopvol:/vol", tiny, "cat", "/vol/file")
    assert (r.returncode, r.stdout) == (0, "kept\n")


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["-v", "relative:dir"], "absolute path"),
        (["--mount", "type=bind,target=/x"], "needs source"),
        (["--mount", "type=npipe,target=/x"], "type=npipe is not supported"),
        (["--tmpfs", "/x:uid=3"], "'uid' is not supported"),
        (["--add-host", "db"], "invalid --add-host"),
        (["-v", "/a:/x", "-v", "/b:/x"], "duplicate mount point"),
    ],
)
def test_bad_mounts_are_docker_errors(
    tiny: str, env: dict[str, str], flags: list[str], error: str
) -> None:
    r = manyarch(env, "run", "--rm", *flags, tiny, "true")
    assert r.returncode == 125 and error in r.stderr, r.stderr


# -- exit statuses -----------------------------------------------------------------------


def test_exit_statuses_are_dockers(tiny: str, env: dict[str, str]) -> None:
    assert manyarch(env, "run", "--rm", tiny, "sh", "-c", "exit 7").returncode == 7
    r = manyarch(env, "run", "--rm", tiny, "no-such-command")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = manyarch(env, "run", "--rm", tiny, "/etc/passwd")
    assert r.returncode == 126, r.stderr
    r = manyarch(env, "run", "--rm", "--no-such-flag", tiny)
    assert r.returncode == 125 and "unknown flag: --no-such-flag" in r.stderr
    r = manyarch(env, "run", "--rm", "--pull", "never", "nothing-here:1")
    assert r.returncode == 125


# -- restart, kill, start ------------------------------------------------------------------


def test_restart_on_failure_then_stop_ends_always(tiny: str, env: dict[str, str]) -> None:
    r = manyarch(
        env, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", tiny,
        "sh", "-c", "echo ran; exit 3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    wait_for(lambda: inspect(env, "flaky")["State"]["Status"] == "exited")  # type: ignore[index]
    obj = inspect(env, "flaky")
    assert obj["RestartCount"] == 2 and obj["State"]["ExitCode"] == 3  # type: ignore[index]
    assert manyarch(env, "logs", "flaky").stdout.split() == ["ran"] * 3
    r = manyarch(env, "run", "-d", "--name", "forever", "--restart", "always", tiny, "sleep", "0.3")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: inspect(env, "forever")["RestartCount"] >= 2)  # type: ignore[operator]
    assert manyarch(env, "stop", "-t", "1", "forever").returncode == 0
    time.sleep(1)
    assert inspect(env, "forever")["State"]["Status"] == "exited"  # type: ignore[index]
    bad = manyarch(env, "run", "--rm", "--restart", "always", tiny, "true")
    assert bad.returncode == 125 and "--restart and --rm" in bad.stderr


def test_kill_start_restart(tiny: str, env: dict[str, str]) -> None:
    script = "trap 'echo usr1' USR1; echo up; while :; do sleep 0.1; done"
    assert manyarch(env, "run", "-d", "--name", "k", tiny, "sh", "-c", script).returncode == 0
    wait_for(lambda: "up" in manyarch(env, "logs", "k").stdout)  # the trap is set
    assert manyarch(env, "kill", "-s", "USR1", "k").returncode == 0
    wait_for(lambda: "usr1" in manyarch(env, "logs", "k").stdout)
    assert manyarch(env, "kill", "k").stdout == "k\n"
    wait_for(lambda: inspect(env, "k")["State"]["Status"] == "exited")  # type: ignore[index]
    assert inspect(env, "k")["State"]["ExitCode"] == 137  # type: ignore[index]
    assert manyarch(env, "start", "k").returncode == 0
    assert inspect(env, "k")["State"]["Status"] == "running"  # type: ignore[index]
    assert manyarch(env, "restart", "-t", "1", "k").returncode == 0
    assert inspect(env, "k")["State"]["Status"] == "running"  # type: ignore[index]
    assert manyarch(env, "logs", "k").stdout.split().count("up") == 3
    assert manyarch(env, "stop", "-s", "KILL", "k").returncode == 0
    assert inspect(env, "k")["State"]["ExitCode"] == 137  # type: ignore[index]


# -- cgroups -------------------------------------------------------------------------------


def test_limits_are_applied_where_cgroups_can_be_made(tiny: str, env: dict[str, str]) -> None:
    from manyarch.errors import LimitsUnavailable
    from manyarch.run.cgroups import Limits, check

    try:
        check(Limits(pids=10))
    except LimitsUnavailable:
        pytest.skip("this machine does not delegate cgroups (the refusal is tested below)")
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait; echo done"
    r = manyarch(env, "run", "--rm", "--pids-limit", "5", tiny, "sh", "-c", script)
    assert r.returncode != 0 and "fork" in r.stderr.lower(), r.stderr
    r = manyarch(env, "run", "--rm", "--pids-limit", "50", tiny, "sh", "-c", script)
    assert (r.returncode, r.stdout) == (0, "done\n"), r.stderr
    r = manyarch(
        env, "run", "--name", "oom", "-m", "16m", tiny,
        "sh", "-c", "head -c 200000000 /dev/zero | tail -n 1 >/dev/null",
    )  # fmt: skip
    assert r.returncode == 137, r.stderr
    assert inspect(env, "oom")["State"]["OOMKilled"] is True  # type: ignore[index]
    r = manyarch(env, "run", "--rm", "--cpus", "0.5", tiny, "true")
    assert r.returncode == 0, r.stderr


def test_limits_are_refused_where_cgroups_are_not_delegated(tmp_path: Path) -> None:
    # a user who may not make cgroups: the flag is named, before anything is pulled
    home = Path("/tmp") / f"manyarch-nobody-{os.getpid()}"
    home.mkdir()
    try:
        os.chown(home, 65534, 65534)
        env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "d"),
                   MANYARCH_STORE=str(home / "s"), PYTHONDONTWRITEBYTECODE="1")  # fmt: skip
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-m", "manyarch", "run", "--rm", "-m", "64m", "--pull", "never",
             "oci-layout:///nonexistent:x"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert r.returncode == 125, r.stderr
    assert "--memory need cgroups" in r.stderr and "does not delegate" in r.stderr


# -- health --------------------------------------------------------------------------------


def test_health_check_shows_in_ps_and_inspect(tiny: str, env: dict[str, str]) -> None:
    r = manyarch(
        env, "run", "-d", "--name", "doc", "--health-cmd", "test -f /tmp/ok",
        "--health-interval", "1s", "--health-start-interval", "300ms", "--health-retries", "2",
        tiny, "sh", "-c", "sleep 1; touch /tmp/ok; sleep 30",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "(health: starting)" in manyarch(env, "ps").stdout
    wait_for(lambda: "(healthy)" in manyarch(env, "ps").stdout, 20)
    health = inspect(env, "doc")["State"]["Health"]  # type: ignore[index]
    assert health["Status"] == "healthy" and health["Log"][-1]["ExitCode"] == 0  # type: ignore[index]
    assert manyarch(env, "ps", "-q", "--filter", "health=healthy").stdout.strip()
    assert manyarch(env, "exec", "doc", "rm", "/tmp/ok").returncode == 0
    wait_for(lambda: "(unhealthy)" in manyarch(env, "ps").stdout, 20)
    r = manyarch(env, "run", "--rm", "--no-healthcheck", "--health-cmd", "true", tiny, "true")
    assert r.returncode == 125 and "conflicts" in r.stderr


# -- exec ---------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_exec_runs_in_the_container(tiny: str, env: dict[str, str], platform: str) -> None:
    if platform == "linux/arm64" and not BINFMT_ARM64.exists():
        pytest.skip("no arm64 emulation handler registered")
    name = f"ex-{platform.split('/')[1]}"
    r = manyarch(
        env, "run", "-d", "--name", name, "--platform", platform, "-e", "FROM_RUN=1", tiny,
        "sh", "-c", "echo hello > /tmp/mark; sleep 60",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    script = "id -u; pwd; echo $FROM_RUN $X; cat /tmp/mark; uname -m; echo $$"
    r = manyarch(env, "exec", "-u", "app", "-w", "/home/app", "-e", "X=2", name, "sh", "-c", script)
    machine = "x86_64" if platform == "linux/amd64" else "aarch64"
    assert r.stdout.split()[:6] == ["1000", "/home/app", "1", "2", "hello", machine], r.stderr
    assert int(r.stdout.split()[6]) > 1  # in the container's PID namespace
    assert manyarch(env, "exec", name, "no-such").returncode == 127
    assert manyarch(env, "exec", name, "sh", "-c", "exit 5").returncode == 5
    r = subprocess.run(
        [sys.executable, "-m", "manyarch", "exec", "-i", name, "cat"],
        env=env, input="piped\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.stdout == "piped\n"


# -- a terminal ------------------------------------------------------------------------------


def _in_pty(argv: list[str], env: dict[str, str], rows: int, cols: int) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session on the new terminal, as a shell's
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.execve(sys.executable, [sys.executable, "-m", "manyarch", *argv], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_run_and_exec_it_get_a_terminal_of_the_callers_size_and_term(
    tiny: str, env: dict[str, str]
) -> None:
    term_env = dict(env, TERM="xterm-256color")
    probe = "stty size; echo $TERM; test -t 0 && test -t 1 && echo tty; tty >/dev/null && echo ctty"
    code, out = _in_pty(["run", "--rm", "-it", tiny, "sh", "-c", probe], term_env, 33, 111)
    assert code == 0, out
    assert out.split() == ["33", "111", "xterm-256color", "tty", "ctty"]
    assert manyarch(env, "run", "-d", "--name", "tt", tiny, "sleep", "60").returncode == 0
    code, out = _in_pty(["exec", "-it", "tt", "sh", "-c", probe], term_env, 20, 70)
    assert code == 0, out
    assert out.split() == ["20", "70", "xterm-256color", "tty", "ctty"]


# -- scripting flags -------------------------------------------------------------------------


def test_ps_logs_inspect_scripting_flags(tiny: str, env: dict[str, str]) -> None:
    script = "echo one; echo two >&2; echo three"
    r = manyarch(env, "run", "--name", "fg", "-l", "team=a", tiny, "sh", "-c", script)
    assert (r.returncode, r.stdout, r.stderr) == (0, "one\nthree\n", "two\n")
    # a foreground container keeps its log too, streams apart
    logs = manyarch(env, "logs", "fg")
    assert (logs.stdout, logs.stderr) == ("one\nthree\n", "two\n")
    # (the two streams are copied apart: their relative order is not fixed, as with docker)
    last = manyarch(env, "logs", "--tail", "1", "fg")
    assert (last.stdout + last.stderr) in ("three\n", "two\n")
    stamped = manyarch(env, "logs", "-t", "fg").stdout.splitlines()
    assert stamped[0].endswith("Z one") and stamped[0][:4].isdigit()
    assert manyarch(env, "logs", "--since", "1m", "fg").stdout == "one\nthree\n"
    assert manyarch(env, "logs", "--until", "1h", "fg").stdout == ""
    assert manyarch(env, "run", "-d", "--name", "bg", tiny, "sleep", "60").returncode == 0
    names = manyarch(env, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert names[:2] == ["bg", "fg"]
    assert manyarch(env, "ps", "-l", "--format", "{{.Names}}").stdout == "bg\n"
    assert manyarch(env, "ps", "-n", "2", "-q").stdout.count("\n") == 2
    exited = manyarch(env, "ps", "-a", "-f", "status=exited", "--format", "{{.Names}}")
    assert "fg" in exited.stdout.split() and "bg" not in exited.stdout.split()
    assert (
        manyarch(env, "ps", "-a", "-f", "label=team=a", "--format", "{{.Names}}").stdout == "fg\n"
    )
    table = manyarch(env, "ps", "--format", "table {{.Names}}\\t{{.State}}").stdout.splitlines()
    assert table[0].split() == ["NAMES", "STATE"] and table[1].split() == ["bg", "running"]
    row = json.loads(manyarch(env, "ps", "--format", "{{json .}}").stdout.splitlines()[0])
    assert row["Names"] == "bg" and row["State"] == "running"
    assert "virtual" in manyarch(env, "ps", "-s").stdout
    obj = inspect(env, "fg")
    assert obj["State"]["Status"] == "exited" and obj["Config"]["Labels"]["team"] == "a"  # type: ignore[index]
    assert obj["Config"]["Cmd"] == ["sh", "-c", script]  # type: ignore[index]
    assert obj["Name"] == "/fg" and len(str(obj["Id"])) == 64
    r = manyarch(env, "inspect", "--format", "{{.Id}} {{.Architecture}}", tiny)
    assert r.stdout.split()[1] == "amd64" and r.stdout.startswith("sha256:")
    assert manyarch(env, "inspect", "nothing-of-that-name").returncode == 1


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--pid", "host", "IMG"], "--pid"),
        (["run", "--network-alias", "db", "IMG"], "--network-alias"),
        (["run", "--ulimit", "nofile=5", "IMG"], "--ulimit"),
        (["logs", "--details", "c"], "--details"),
        (["images", "--tree"], "--tree"),
        (["ps", "--bogus"], "--bogus"),
    ],
)
def test_unsupported_flags_are_named(env: dict[str, str], argv: list[str], flag: str) -> None:
    r = manyarch(env, *argv)
    assert r.returncode == (125 if argv[0] == "run" else 2)
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: ") and flag in first, r.stderr
    assert f"manyarch {argv[0]} --help" in r.stderr
