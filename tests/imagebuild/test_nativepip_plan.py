"""Which RUN lines native pip takes, and why it leaves the others to emulation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyarch.imagebuild.nativepip.command import (
    Fallback,
    NativePip,
    PipInstall,
    plan_run,
    requirement_file_problem,
)
from manyarch.imagebuild.nativepip.target import TargetFacts, interpreter_path

SH = ("/bin/sh", "-c")


def sh(text: str, env: dict[str, str] | None = None) -> NativePip | Fallback:
    return plan_run([*SH, text], True, env or {}, "/srv")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("pip install fastapi uvicorn", PipInstall("pip", ("fastapi", "uvicorn"))),
        (
            "pip3 install -U 'uvicorn[standard]>=0.30'",
            PipInstall("pip3", ("uvicorn[standard]>=0.30",), upgrade=True),
        ),
        (
            "python3 -m pip install --no-cache-dir -r requirements.txt",
            PipInstall("python3", requirement_files=("requirements.txt",)),
        ),
        (
            "python -m pip install -rreq.txt -c constraints.txt --user",
            PipInstall(
                "python",
                requirement_files=("req.txt",),
                constraint_files=("constraints.txt",),
                user=True,
            ),
        ),
        (
            "pip install --prefix=/opt/app --index-url https://pypi.org/simple click",
            PipInstall(
                "pip",
                ("click",),
                pip_options=("--index-url", "https://pypi.org/simple"),
                prefix="/opt/app",
            ),
        ),
        (
            "pip install --extra-index-url https://x.example/simple -q click==8.1.7",
            PipInstall(
                "pip",
                ("click==8.1.7",),
                pip_options=("--extra-index-url", "https://x.example/simple"),
            ),
        ),
        ("/usr/bin/python3 -m pip install idna", PipInstall("/usr/bin/python3", ("idna",))),
        ("pip install --no-compile idna", PipInstall("pip", ("idna",), compile=False)),
        ("pip install --compile idna", PipInstall("pip", ("idna",))),
    ],
)
def test_understood_lines(line: str, expected: PipInstall) -> None:
    plan = sh(line)
    assert isinstance(plan, NativePip), plan
    assert plan.commands == (expected,)
    assert plan.workdir == "/srv"


def test_chained_with_and_only() -> None:
    plan = sh("pip install -U pip && pip install -r requirements.txt")
    assert isinstance(plan, NativePip)
    assert [c.upgrade for c in plan.commands] == [True, False]


def test_exec_form() -> None:
    plan = plan_run(["pip", "install", "click"], False, {}, "/")
    assert isinstance(plan, NativePip)
    assert plan.commands[0].requirements == ("click",)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("apt-get update && pip install click", "not pip"),
        ("pip install click | tee log", "operator"),
        ("pip install click; echo done", "operator"),
        ("pip install click || true", "operator"),
        ("pip install $PKG", "expansion"),
        ("pip install `cat x`", "expansion"),
        ("pip install ./mypkg", "path or URL"),
        ("pip install git+https://github.com/x/y", "path or URL"),
        ("pip install 'y @ https://x/y.whl'", "direct URL"),
        ("pip install -e .", "-e"),
        ("pip install --no-binary :all: click", "--no-binary"),
        ("pip uninstall -y click", "not pip install"),
        ("pip install", "nothing to install"),
        ("FOO=1 pip install click", "assignment"),
        ("python3 setup.py install", "something else"),
        ("pip install --find-links ./wheels click", "local directory"),
        ("pip install --user --prefix /x click", "--user with --prefix"),
        ("pip install --only-binary=click click", "--only-binary"),
    ],
)
def test_fallback_reasons(line: str, reason: str) -> None:
    plan = sh(line)
    assert isinstance(plan, Fallback), plan
    assert reason in plan.reason


def test_unknown_pip_env_falls_back() -> None:
    plan = sh("pip install click", {"PIP_NO_DEPS": "1"})
    assert isinstance(plan, Fallback) and "PIP_NO_DEPS" in plan.reason
    ok = sh("pip install click", {"PIP_NO_CACHE_DIR": "1", "PIP_BREAK_SYSTEM_PACKAGES": "1"})
    assert isinstance(ok, NativePip)


def test_not_a_shell() -> None:
    assert isinstance(plan_run(["/bin/bash", "-lc", "pip install x"], True, {}, "/"), Fallback)


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("pip install -rUq&|;$'\"=./ab[]\\#")), max_size=40))
def test_plan_never_raises(text: str) -> None:
    plan = sh(text)
    assert isinstance(plan, NativePip | Fallback)
    if isinstance(plan, NativePip):
        assert all(c.requirements or c.requirement_files for c in plan.commands)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("click==8.1.7\n# comment\nidna>=3 ; python_version >= '3.8'\n", None),
        ("--index-url https://pypi.org/simple\nclick\n", None),
        ("-r other.txt\n", None),
        ("-e .\n", "-e"),
        ("./local\n", "path or URL"),
        ("-r /etc/abs.txt\n", "/etc/abs.txt"),
        ("click==8.1.7 --hash=sha256:abc\n", None),
    ],
)
def test_requirement_files(tmp_path: Path, content: str, problem: str | None) -> None:
    (tmp_path / "other.txt").write_text("idna\n")
    f = tmp_path / "req.txt"
    f.write_text(content)
    got = requirement_file_problem(f)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def test_interpreter_of_pip_script_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_bytes(b"\x7fELF")
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "usr/local/bin/pip").write_text("#!/usr/bin/python3\nimport pip\n")
    path = "/usr/local/bin:/usr/bin"
    assert interpreter_path(root, "pip", path) == "/usr/bin/python3"
    assert interpreter_path(root, "python3", path) == "/usr/bin/python3"
    assert interpreter_path(root, "pip3", path) is None
    (root / "usr/local/bin/pip3").write_text("#!/usr/bin/env python3\n")
    assert interpreter_path(root, "pip3", path) is None  # env: which python is not known


def test_facts_round_trip() -> None:
    facts = TargetFacts(
        (3, 11, 2),
        "cpython",
        "/usr/bin/python3",
        ("/usr/lib/python3.11",),
        ("cp311-cp311-manylinux_2_36_aarch64", "py3-none-any"),
        {"platform_machine": "aarch64"},
        "23.0.1",
        {"purelib": "/usr/local/lib/python3.11/dist-packages"},
        {},
        {},
    )
    assert TargetFacts.from_json(facts.to_json()) == facts
    assert facts.python_version == "3.11.2"
