"""``manyarch run`` of the seed's demo image from the test registry (real bwrap, pasta, QEMU)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import manyarch
from tests.helpers.demo_image import DemoImage
from tests.helpers.registry_server import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers with -p are tested as root"),
]

BINFMT_ARM64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data home (rootfs cache, containers) for the module: unpacks are shared."""
    return tmp_path_factory.mktemp("run-data")


@pytest.fixture
def env(data_home: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh store per test (tags move between platforms), the module's data home."""
    yield dict(os.environ, MANYARCH_STORE=str(tmp_path / "store"), XDG_DATA_HOME=str(data_home))
    leftovers = containers(data_home)
    for c in leftovers:
        manyarch(dict(os.environ, XDG_DATA_HOME=str(data_home)), "rm", "-f", c.name)


def containers(data_home: Path) -> list[Path]:
    d = data_home / "manyarch" / "containers"
    return sorted(d.iterdir()) if d.is_dir() else []


def get_arch(port: int, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/arch", timeout=5) as r:
                assert r.status == 200
                return dict(json.loads(r.read()))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(path) in line]


def processes_mentioning(text: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if text.encode() in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return ""


def running(pid: int, started: str) -> bool:
    """The same process (not a reused pid), and not a zombie waiting for init."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] not in ("Z", "X")


def test_host_platform_serves_x86_64_then_ps_logs_stop(
    demo_image: DemoImage, env: dict[str, str], data_home: Path
) -> None:
    port = free_port()
    r = manyarch(env, "run", "-d", "--name", "web", "-p", f"{port}:80", demo_image.ref)
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    assert get_arch(port, 60) == {"architecture": "x86_64"}
    ps = manyarch(env, "ps").stdout.splitlines()
    assert ps[1].split()[0] == cid[:12]
    assert f"0.0.0.0:{port}->80/tcp" in ps[1] and ps[1].endswith("web")
    assert "linux/amd64" in ps[1]
    logs = manyarch(env, "logs", "web")
    # uvicorn writes to stderr: docker's logs gives it back on stderr
    assert "Uvicorn running on http://0.0.0.0:80" in logs.stderr
    assert manyarch(env, "stop", "web").returncode == 0
    assert "Exited (0)" in manyarch(env, "ps", "-a").stdout
    assert manyarch(env, "rm", "web").returncode == 0
    assert containers(data_home) == [] and mounts_under(data_home) == []


def test_a_container_port_alone_gets_a_free_host_port(
    demo_image: DemoImage, env: dict[str, str]
) -> None:
    r = manyarch(
        env, "run", "-d", "--rm", "--name", "anyport", "-p", "127.0.0.1::80", demo_image.ref
    )
    assert r.returncode == 0, r.stderr
    try:
        line = manyarch(env, "ps").stdout.splitlines()[1]
        m = re.search(r"127\.0\.0\.1:(\d+)->80/tcp", line)
        assert m, line
        assert get_arch(int(m.group(1)), 60) == {"architecture": "x86_64"}
    finally:
        assert manyarch(env, "stop", "anyport").returncode == 0


def test_stop_sends_the_stop_signal(demo_image: DemoImage, env: dict[str, str]) -> None:
    # a program that ignores SIGTERM but ends on SIGUSR1, as --stop-signal says
    script = "trap '' TERM; trap 'echo got-usr1; exit 3' USR1; echo up; while :; do sleep 0.1; done"
    r = manyarch(
        env,
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "usr1",
        demo_image.ref,
        "sh",
        "-c",
        script,
    )
    assert r.returncode == 0, r.stderr
    assert manyarch(env, "stop", "-t", "30", "usr1").returncode == 0
    # 3 from the trap: a SIGTERM would have been ignored, then SIGKILLed (137)
    assert "Exited (3)" in manyarch(env, "ps", "-a").stdout
    assert manyarch(env, "logs", "usr1").stdout.split() == ["up", "got-usr1"]
    assert manyarch(env, "rm", "usr1").returncode == 0
    bad = manyarch(env, "run", "--stop-signal", "SIGNOPE", demo_image.ref)
    assert bad.returncode == 125 and "invalid signal: SIGNOPE" in bad.stderr  # docker's 125


def test_arm64_runs_under_emulation(
    demo_image: DemoImage, env: dict[str, str], data_home: Path
) -> None:
    if not BINFMT_ARM64.exists():
        pytest.skip("no arm64 emulation handler registered")
    port = free_port()
    r = manyarch(
        env, "run", "--rm", "-d", "--platform", "linux/arm64", "-p", f"{port}:80", demo_image.ref
    )
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stderr  # a platform was asked for
    try:
        assert get_arch(port, 120) == {"architecture": "aarch64"}
    finally:
        assert manyarch(env, "stop", r.stdout.strip()).returncode == 0
    assert containers(data_home) == [] and mounts_under(data_home) == []


def test_emulation_off_gets_the_kernels_exec_format_error(
    demo_image: DemoImage, env: dict[str, str], data_home: Path
) -> None:
    if not BINFMT_ARM64.exists():
        pytest.skip("no arm64 emulation handler registered")
    assert manyarch(env, "pull", "-q", "--platform", "linux/arm64", demo_image.ref).returncode == 0
    r = manyarch(env, "run", "--rm", "--emulation=off", "-p", f"{free_port()}:80", demo_image.ref)
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert lines[0].startswith(
        "WARNING: The requested image's platform (linux/arm64) does not match the detected host "
        "platform (linux/amd64"
    )
    assert lines[0].endswith(") and no specific platform was requested")
    assert lines[1] == "exec /usr/local/bin/uvicorn: exec format error"
    assert lines[2].startswith("hint: ") and "manyarch emulation install arm64" in lines[2]
    assert BINFMT_ARM64.exists()  # the system's handler is untouched
    assert containers(data_home) == [] and mounts_under(data_home) == []


def test_the_exit_code_is_the_containers(demo_image: DemoImage, env: dict[str, str]) -> None:
    r = manyarch(
        env, "run", "--rm", "-e", "CODE=7", demo_image.ref, "sh", "-c", "echo $CODE; exit $CODE"
    )
    assert (r.returncode, r.stdout) == (7, "7\n")


def test_the_images_user_is_that_user_on_the_host(
    demo_image: DemoImage, env: dict[str, str]
) -> None:
    # USER 10001 runs as uid 10001 on the host: root's files stay root's (not
    # the overflow uid) and out of its reach, as under runc
    script = (
        "id -u; stat -c %u:%g /etc/passwd; touch /etc/x 2>/dev/null && echo wrote || echo denied"
    )
    r = manyarch(env, "run", "--rm", demo_image.ref, "sh", "-c", script)
    assert (r.returncode, r.stdout.split()) == (0, ["10001", "0:0", "denied"]), r.stderr


def test_interactive_feeds_stdin_and_tty_gives_the_terminal(
    demo_image: DemoImage, env: dict[str, str]
) -> None:
    cat = [sys.executable, "-m", "manyarch", "run", "--rm"]
    script = ["sh", "-c", "cat; echo end"]
    r = subprocess.run(
        [*cat, "-i", demo_image.ref, *script],
        env=env,
        input="hello\n",
        capture_output=True,
        text=True,
    )
    assert (r.returncode, r.stdout) == (0, "hello\nend\n"), r.stderr
    # without -i the container's stdin is empty, as docker's
    r = subprocess.run(
        [*cat, demo_image.ref, *script], env=env, input="hello\n", capture_output=True, text=True
    )
    assert (r.returncode, r.stdout) == (0, "end\n"), r.stderr
    # -t needs a terminal, as docker says
    r = subprocess.run(
        [*cat, "-it", demo_image.ref, "true"], env=env, input="", capture_output=True, text=True
    )
    assert r.returncode == 125 and "the input device is not a TTY" in r.stderr
    # from a terminal, -it hands it over
    probe = ["sh", "-c", "test -t 0 && test -t 1 && echo tty || echo notty"]
    for flags, expected in ((["-it"], "tty"), ([], "notty")):
        primary, secondary = os.openpty()
        try:
            proc = subprocess.Popen(
                [*cat, *flags, demo_image.ref, *probe],
                env=env,
                stdin=secondary,
                stdout=secondary,
                stderr=subprocess.PIPE,
            )
            os.close(secondary)
            out = b""
            while True:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: every writer of the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
            assert proc.wait(timeout=60) == 0
            assert out.decode().split() == [expected], flags
        finally:
            os.close(primary)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_run_leaves_nothing_behind(
    demo_image: DemoImage, env: dict[str, str], data_home: Path, sig: signal.Signals
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "manyarch", "run", "--rm", "-p", f"{port}:80", demo_image.ref],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert get_arch(port, 60) == {"architecture": "x86_64"}
        [cdir] = containers(data_home)
        state = json.loads((cdir / "state.json").read_text())
        started = start_time(state["pid"])
        assert processes_mentioning(cdir.name) and running(state["pid"], started)
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == (0 if sig == signal.SIGTERM else -9)  # uvicorn ends cleanly on SIGTERM
    deadline = time.monotonic() + 10  # after SIGKILL the reaper cleans up
    while (containers(data_home) or processes_mentioning(cdir.name)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert containers(data_home) == []
    assert mounts_under(data_home) == []
    assert processes_mentioning(cdir.name) == []
    assert not running(state["pid"], started)
