"""Commands, environment, PATH lookup in a rootfs, and runc's wording of exec errors."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from manyarch.errors import InvalidArgument, SandboxError
from manyarch.oci import ContainerConfig, Descriptor, ImageConfig, Manifest
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.platform import Platform
from manyarch.run import container, supervisor
from manyarch.run.container import RunOptions
from manyarch.run.local import LocalImage

D = Digest("sha256", "0" * 64)


def image(entrypoint: tuple[str, ...] | None, cmd: tuple[str, ...] | None) -> LocalImage:
    cfg = ImageConfig(
        "arm64",
        "linux",
        config=ContainerConfig(
            env=("PATH=/usr/local/bin:/usr/bin", "A=image"), entrypoint=entrypoint, cmd=cmd
        ),
    )
    desc = Descriptor(mt.OCI_MANIFEST, D, 1, Platform.parse("linux/arm64"))
    return LocalImage(
        "localhost:5000/app:latest", desc, Manifest(Descriptor(mt.OCI_CONFIG, D, 1)), D, cfg
    )


@pytest.mark.parametrize(
    ("entry", "cmd", "options", "argv"),
    [
        (None, ("uvicorn", "app"), RunOptions(), ["uvicorn", "app"]),
        (None, ("uvicorn", "app"), RunOptions(command=["sh"]), ["sh"]),
        (("/init",), ("serve",), RunOptions(), ["/init", "serve"]),
        (("/init",), ("serve",), RunOptions(command=["x"]), ["/init", "x"]),
        (("/init",), ("serve",), RunOptions(entrypoint="sh"), ["sh"]),
        (
            ("/init",),
            ("serve",),
            RunOptions(entrypoint="sh", command=["-c", "id"]),
            ["sh", "-c", "id"],
        ),
        (("/init",), None, RunOptions(entrypoint="", command=["id"]), ["id"]),
    ],
)
def test_command_combines_like_docker(
    entry: tuple[str, ...] | None, cmd: tuple[str, ...] | None, options: RunOptions, argv: list[str]
) -> None:
    assert container.command_of(image(entry, cmd), options) == argv


def test_no_command_at_all_is_a_usage_error() -> None:
    with pytest.raises(InvalidArgument):
        container.command_of(image(None, None), RunOptions())


def test_environment_order() -> None:
    env = container.environment(image(None, ("x",)), RunOptions(env={"A": "flag"}))
    assert env["A"] == "flag"
    assert env["PATH"] == "/usr/local/bin:/usr/bin"
    assert env["MANYARCH_IMAGE_PLATFORM"] == "linux/arm64"


def _exe(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


def test_resolve_command_follows_links_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _exe(root / "opt/venv/bin/uvicorn")
    (root / "usr/local/bin").mkdir(parents=True)
    # an absolute link is the container's, not the host's
    os.symlink("/opt/venv/bin/uvicorn", root / "usr/local/bin/uvicorn")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/notexec").write_text("")
    assert container.resolve_command(root, ["uvicorn", "a"], "/usr/bin:/usr/local/bin") == [
        "/usr/local/bin/uvicorn",
        "a",
    ]
    assert container.resolve_command(root, ["./x"], "/usr/bin") == ["./x"]
    with pytest.raises(SandboxError, match='exec: "notexec": executable file not found'):
        container.resolve_command(root, ["notexec"], "/usr/bin")


def test_a_link_cannot_climb_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    _exe(tmp_path / "outside")
    os.symlink("../../outside", root / "bin/esc")
    with pytest.raises(SandboxError):
        container.resolve_command(root, ["esc"], "/bin")


@pytest.mark.parametrize(
    ("first", "expected", "error"),
    [
        (
            b"bwrap: execvp /usr/local/bin/uvicorn: Exec format error\n",
            "exec /usr/local/bin/uvicorn: exec format error\nhint: HINT\n",
            ["Exec format error"],
        ),
        (
            b"bwrap: execvp /x: No such file or directory\n",
            "exec /x: no such file or directory\n",
            ["No such file or directory"],
        ),
        (b"INFO: bwrap: execvp is fine\n", "INFO: bwrap: execvp is fine\n", []),
    ],
)
def test_exec_errors_are_worded_as_runc_words_them(
    tmp_path: Path, first: bytes, expected: str, error: list[str]
) -> None:
    # the supervisor rewords the first line of the output only: bwrap's, when it failed
    r, w = os.pipe()
    out = tmp_path / "out"
    state = container.ContainerState(
        "c" * 64, "n", "img", "sha256:" + "0" * 64, "linux/amd64", ["x"], {}, "/", ""
    )
    (tmp_path / "c").mkdir()
    sup = supervisor.Supervisor(state, stdout_fd=-1)
    with open(out, "wb") as dest, os.fdopen(r, "rb") as src:
        os.write(w, first + b"bwrap: execvp later lines are the program's\n")
        os.close(w)
        sup._copier(src, "stderr", dest.fileno(), "HINT").join()
    assert out.read_text() == expected + "bwrap: execvp later lines are the program's\n"
    assert sup._seen == error  # what the supervisor records as the exec error


def test_an_exec_failure_written_in_pieces_is_still_reworded(tmp_path: Path) -> None:
    # bwrap's stderr is unbuffered: "bwrap: ", the message and the newline are separate
    # writes, and a quiet machine's copier reads the first alone
    r, w = os.pipe()
    out = tmp_path / "out"
    state = container.ContainerState(
        "c" * 64, "n", "img", "sha256:" + "0" * 64, "linux/amd64", ["x"], {}, "/", ""
    )
    sup = supervisor.Supervisor(state, stdout_fd=-1)
    with open(out, "wb") as dest, os.fdopen(r, "rb") as src:
        copier = sup._copier(src, "stderr", dest.fileno(), None)
        for piece in (b"bwrap: ", b"execvp /etc/passwd", b": Permission denied", b"\n"):
            os.write(w, piece)
            time.sleep(0.05)  # the copier reads each piece on its own
        os.close(w)
        copier.join()
    assert out.read_text() == "exec /etc/passwd: permission denied\n"
    assert sup._seen == ["Permission denied"]


def test_output_that_is_not_an_exec_failure_is_not_held(tmp_path: Path) -> None:
    # a prompt without a newline reaches the terminal at once
    r, w = os.pipe()
    out = tmp_path / "out"
    state = container.ContainerState(
        "c" * 64, "n", "img", "sha256:" + "0" * 64, "linux/amd64", ["x"], {}, "/", ""
    )
    sup = supervisor.Supervisor(state, stdout_fd=-1)
    with open(out, "wb") as dest, os.fdopen(r, "rb") as src:
        copier = sup._copier(src, "stdout", dest.fileno(), None)
        os.write(w, b"Password: ")
        deadline = time.monotonic() + 5
        while out.read_bytes() != b"Password: " and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out.read_bytes() == b"Password: "
        os.close(w)
        copier.join()


@pytest.mark.parametrize(
    ("platform", "on", "has_hint"),
    [("linux/amd64", True, False), ("linux/arm64", True, True), ("linux/arm64", False, True)],
)
def test_emulation_hint(platform: str, on: bool, has_hint: bool) -> None:
    hint = supervisor.emulation_hint(Platform.parse(platform), on)
    assert (hint is not None) == has_hint
    if hint:
        assert "manyarch emulation install arm64" in hint


@pytest.mark.parametrize(
    ("text", "sig"),
    [
        ("SIGQUIT", signal.SIGQUIT),
        ("QUIT", signal.SIGQUIT),
        (" quit ", signal.SIGQUIT),
        ("3", signal.SIGQUIT),
        ("sigusr1", signal.SIGUSR1),
    ],
)
def test_signals_are_read_as_docker_reads_them(text: str, sig: signal.Signals) -> None:
    assert container.parse_signal(text) is sig


@pytest.mark.parametrize("text", ["", "SIGNOPE", "999", "-1"])
def test_a_bad_signal_is_a_usage_error(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid signal"):
        container.parse_signal(text)


def test_stop_signal_from_the_flag_then_the_image_then_sigterm() -> None:
    plain = image(None, ("serve",))
    quits = dataclasses.replace(
        plain,
        config=dataclasses.replace(
            plain.config,
            config=dataclasses.replace(plain.config.config, stop_signal="SIGQUIT"),
        ),
    )
    assert container.stop_signal_of(plain, RunOptions()) == "SIGTERM"
    assert container.stop_signal_of(quits, RunOptions()) == "SIGQUIT"
    assert container.stop_signal_of(quits, RunOptions(stop_signal="usr1")) == "SIGUSR1"
