"""Which RUN lines native pip takes, how it reads them, and why others are emulated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyarch.imagebuild.nativepip.command import (
    Fallback,
    NativePip,
    PipCommand,
    PoetryCommand,
    VenvCommand,
    Word,
    expand_words,
    plan_run,
    split_shell,
)
from manyarch.imagebuild.nativepip.install import paths_read
from manyarch.imagebuild.nativepip.pipoptions import fast_pip_options
from manyarch.imagebuild.nativepip.place import install_order
from manyarch.imagebuild.nativepip.target import interpreter_path, pip_tags
from manyarch.imagebuild.nativepip.twin import under_mount, uv_cache_dir

SH = ("/bin/sh", "-c")


def sh(text: str, env: dict[str, str] | None = None) -> NativePip | Fallback:
    return plan_run([*SH, text], True, env or {}, "/srv")


def words(*texts: str) -> tuple[Word, ...]:
    return tuple(Word(t) for t in texts)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("pip install fastapi uvicorn", PipCommand("pip", words("fastapi", "uvicorn"))),
        (
            "pip3 install -U 'uvicorn[standard]>=0.30'",
            PipCommand("pip3", words("-U", "uvicorn[standard]>=0.30")),
        ),
        (
            "python3 -m pip install --no-cache-dir -r requirements.txt",
            PipCommand("python3", words("--no-cache-dir", "-r", "requirements.txt")),
        ),
        ("/usr/bin/python3 -m pip install idna", PipCommand("/usr/bin/python3", words("idna"))),
        ("/venv/bin/pip install idna", PipCommand("/venv/bin/pip", words("idna"))),
        ("pip install six==$SIXV", PipCommand("pip", words("six==1.17.0"))),
        ('pip install "six==${SIXV}"', PipCommand("pip", words("six==1.17.0"))),
        ("pip install ${NOPE:-idna}", PipCommand("pip", words("idna"))),
        ("pip install $PKGS", PipCommand("pip", words("idna", "six"))),
        ("pip install '$SIXV'", PipCommand("pip", words("$SIXV"))),
        ("pip install \\\n  idna # a comment", PipCommand("pip", words("idna"))),
        ("pip install dist/*.whl", PipCommand("pip", (Word("dist/*.whl", glob=True),))),
        ("FOO=1 pip install idna", PipCommand("pip", words("idna"), {"FOO": "1"})),
        (
            "pip wheel -w /wh -r req.txt",
            PipCommand("pip", words("-w", "/wh", "-r", "req.txt"), action="wheel"),
        ),
        (
            "python3 -m pip wheel --no-deps .",
            PipCommand("python3", words("--no-deps", "."), action="wheel"),
        ),
        ("python -m venv /venv", VenvCommand("python", words("/venv"))),
    ],
)
def test_understood_lines(line: str, expected: PipCommand) -> None:
    plan = sh(line, {"SIXV": "1.17.0", "PKGS": "idna six"})
    assert isinstance(plan, NativePip), plan
    assert plan.commands == (expected,)
    assert plan.workdir == "/srv"


def test_chained_with_and_or_semicolon() -> None:
    plan = sh("pip install -U pip && pip install -r requirements.txt; pip install idna;")
    assert isinstance(plan, NativePip)
    assert [c.args[0].text for c in plan.commands] == ["-U", "-r", "idna"]


def test_exec_form() -> None:
    plan = plan_run(["pip", "install", "click"], False, {}, "/")
    assert isinstance(plan, NativePip)
    assert plan.commands[0].args == words("click")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("apt-get update && pip install click", "not pip"),
        ("pip install click | tee log", "operator"),
        ("pip install click || true", "operator"),
        ("pip install `cat x`", "substitution"),
        ("pip install $(cat x)", "substitution"),
        ("pip install ~/x", "~"),
        ("pip uninstall -y click", "not pip install"),
        ("pip download -d /d click", "pip download is not pip install or pip wheel"),
        ("poetry config virtualenvs.create false", "poetry config is not poetry install"),
        ("python3 setup.py install", "something else"),
        ("pip install 'unclosed", "quote"),
    ],
)
def test_fallback_reasons(line: str, reason: str) -> None:
    plan = sh(line)
    assert isinstance(plan, Fallback), plan
    assert reason in plan.reason


def test_not_a_shell() -> None:
    assert isinstance(plan_run(["/bin/bash", "-lc", "pip install x"], True, {}, "/"), Fallback)


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("pip install -rUq&|;$'\"=./ab[]\\#{}*")), max_size=40))
def test_plan_never_raises(text: str) -> None:
    plan = sh(text)
    assert isinstance(plan, NativePip | Fallback)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.text(alphabet="abc=-_.$ '\"*", min_size=1, max_size=8), max_size=5))
def test_single_quoted_words_come_back_as_they_were(texts: list[str]) -> None:
    quoted = " ".join("'" + t.replace("'", "'\\''") + "'" for t in texts)
    got = split_shell(f"pip install {quoted}", {})
    assert not isinstance(got, Fallback)
    assert [w.text for w in got[0][2:]] == texts
    assert not any(w.glob for w in got[0])


def test_globs_expand_in_the_image(tmp_path: Path) -> None:
    (tmp_path / "srv/dist").mkdir(parents=True)
    for n in ("b-1-py3-none-any.whl", "a-1-py3-none-any.whl"):
        (tmp_path / "srv/dist" / n).write_bytes(b"")
    got = expand_words([Word("dist/*.whl", glob=True), Word("x*")], tmp_path, "/srv")
    assert got == ["dist/a-1-py3-none-any.whl", "dist/b-1-py3-none-any.whl", "x*"]
    # no match: the shell passes the pattern on
    assert expand_words([Word("/none/*.whl", glob=True)], tmp_path, "/srv") == ["/none/*.whl"]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--no-cache-dir", "-r", "requirements.txt"],
            {"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_ROOT_USER_ACTION": "ignore"},
            {"cache_dir": False, "requirements": ["requirements.txt"],
             "override_externally_managed": True},
        ),
        (["-rreq.txt", "--target=/opt/t", "idna"], {}, {"requirements": ["req.txt"],
                                                         "target_dir": "/opt/t"}),
        (["--user", "--no-compile", "-q", "x"], {}, {"use_user_site": True, "compile": False,
                                                     "quiet": None}),
    ],
)  # fmt: skip
def test_fast_options(args: list[str], env: dict[str, str], expected: dict[str, object]) -> None:
    got = fast_pip_options("23.0.1", args, env, False)
    assert got is not None
    for k, v in expected.items():
        if v is not None:
            assert got.options[k] == v
        assert k in got.changed
    assert got.unhandled == []


@pytest.mark.parametrize(
    ("args", "env", "configs"),
    [
        (["--no-cache", "x"], {}, False),  # a prefix: pip's parser decides (it may be ambiguous)
        (["--no-deps=1", "x"], {}, False),
        (["x"], {"PIP_NO_COMPILE": "1"}, False),  # pip's store_false variables read inverted
        (["x"], {"PIP_BREAK_SYSTEM_PACKAGES": "maybe"}, False),
        (["x"], {}, True),  # the image has a pip.conf
        (["-qr", "req.txt"], {}, False),
    ],
)
def test_fast_options_leave_the_rest_to_the_images_pip(
    args: list[str], env: dict[str, str], configs: bool
) -> None:
    assert fast_pip_options("23.0.1", args, env, configs) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--wheel-dir=/wh", "-r", "req.txt"], {"wheel_dir": "/wh", "requirements": ["req.txt"]}),
        (["-wout", "--no-deps", "x"], {"wheel_dir": "out", "ignore_dependencies": True}),
        (["-w", "/wh", "--no-cache-dir", "x"], {"wheel_dir": "/wh", "cache_dir": False}),
    ],
)
def test_fast_options_of_pip_wheel(args: list[str], expected: dict[str, object]) -> None:
    got = fast_pip_options("23.0.1", args, {}, False, command="wheel")
    assert got is not None
    assert {k: got.options[k] for k in expected} == expected
    assert got.unhandled == []


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["-w", "/wh", "x"], "install"),  # pip install has no -w: its parser refuses it
        (["--user", "x"], "wheel"),
        (["--target", "/t", "x"], "wheel"),
        (["-U", "x"], "wheel"),
    ],
)
def test_fast_options_leave_the_other_commands_options_to_the_images_pip(
    args: list[str], command: str
) -> None:
    assert fast_pip_options("23.0.1", args, {}, False, command=command) is None


def test_fast_options_only_for_known_pips() -> None:
    assert fast_pip_options("22.3", ["x"], {}, False) is None


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


@pytest.mark.parametrize(
    ("env", "mounts", "taken"),
    [
        # uv's Docker guide: RUN --mount=type=cache,target=/root/.cache/uv uv sync
        ({}, ["/root/.cache/uv"], True),
        ({}, ["/root/.cache"], True),
        ({}, ["/root/.cache/pip"], False),
        ({}, ["/root/.cache/uvx"], False),
        ({"UV_CACHE_DIR": "/cache/uv/"}, ["/cache"], True),
        ({"UV_CACHE_DIR": "/cache/uv"}, ["/root/.cache/uv"], False),
        ({"XDG_CACHE_HOME": "/xdg"}, ["/xdg/uv"], True),
        ({"HOME": "/home/app"}, ["/root/.cache/uv"], False),
        ({"HOME": "/home/app"}, ["/home/app/.cache/uv"], True),
    ],
)
def test_uv_cache_in_a_cache_mount(env: dict[str, str], mounts: list[str], taken: bool) -> None:
    """A uv line whose cache is a cache mount is done natively (its cache kept on the host)."""
    assert under_mount(uv_cache_dir(env, "/root"), mounts) is taken


def test_pip_tags_as_the_emulated_pip_lists_them() -> None:
    # pip 23.0.1 under QEMU in the bookworm arm64 base: 564 tags, in this order
    tags = pip_tags((3, 11), "aarch64", (2, 36))
    assert len(tags) == 564
    assert tags[:3] == [
        "cp311-cp311-manylinux_2_36_aarch64",
        "cp311-cp311-manylinux_2_35_aarch64",
        "cp311-cp311-manylinux_2_34_aarch64",
    ]
    i = tags.index("cp311-cp311-manylinux_2_17_aarch64")
    assert tags[i + 1 : i + 3] == ["cp311-cp311-manylinux2014_aarch64", "cp311-cp311-linux_aarch64"]
    assert tags[-1] == "py30-none-any"


def _wheel(path: Path, name: str, requires: list[str]) -> Path:
    import zipfile

    w = path / f"{name}-1-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(w, "w") as zf:
        zf.writestr(f"{name}-1.dist-info/METADATA", meta)
    return w


def test_install_order_is_pips(tmp_path: Path) -> None:
    # pip 23 installs PyJWT==2.9.0 jwt==1.3.1 as pyjwt, pycparser, cffi, cryptography,
    # jwt: the later jwt/__init__.py wins
    wheels = [
        _wheel(tmp_path, "jwt", ["cryptography"]),
        _wheel(tmp_path, "cryptography", ["cffi>=1.12; platform_python_implementation != 'PyPy'"]),
        _wheel(tmp_path, "cffi", ["pycparser"]),
        _wheel(tmp_path, "pycparser", []),
        _wheel(tmp_path, "PyJWT", []),
    ]
    markers = {"platform_python_implementation": "CPython", "python_version": "3.11"}
    order = install_order(wheels, ["PyJWT==2.9.0", "jwt==1.3.1"], markers)
    names = [wheels[i].name.split("-")[0] for i in order]
    assert names == ["PyJWT", "pycparser", "cffi", "cryptography", "jwt"]


@pytest.mark.skipif(
    os.path.realpath("/usr/bin/python3") != "/usr/bin/python3.11"
    or not os.path.isdir("/usr/local/bin"),
    reason="needs the host's Debian python3.11",
)
def test_the_twin_mounts_the_images_links_to_the_hosts_interpreter(tmp_path: Path) -> None:
    from manyarch.imagebuild.nativepip.twin import _link_dir

    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_bytes(b"")
    (root / "usr/bin/python3").symlink_to("python3.11")
    local = root / "usr/local/bin"
    local.mkdir(parents=True)
    (local / "python").symlink_to("python3")  # a hop inside the directory, then out
    (local / "python3").symlink_to("/usr/bin/python3")
    (local / "elsewhere").symlink_to("/opt/python3")
    (local / "copy").write_bytes(b"")
    (root / "opt/bin").mkdir(parents=True)
    (root / "opt/bin/python").symlink_to("/usr/bin/python3.11")
    real = "/usr/bin/python3.11"
    assert _link_dir(root, "/usr/local/bin/python", real) == "/usr/local/bin"
    assert _link_dir(root, "/opt/bin/python", real) == "/opt/bin"
    assert _link_dir(root, "/usr/local/bin/elsewhere", real) is None  # not the interpreter
    assert _link_dir(root, "/usr/local/bin/copy", real) is None  # not a link
    assert _link_dir(root, "/usr/bin/python3", real) is None  # the host's own /usr/bin


def test_paths_read_has_the_directories_a_line_names() -> None:
    plan = sh("pip wheel -w/wh -r/req/r.txt x && pip wheel --wheel-dir=/wh2 -f /links y")
    assert isinstance(plan, NativePip)
    got = paths_read(plan, {})
    for pattern in ("wh/**", "req/r.txt", "wh2/**", "links/**", "srv/**"):
        assert pattern in got


def test_poetry_install_line() -> None:
    plan = sh("POETRY_NO_INTERACTION=1 poetry install --no-root --only main")
    assert isinstance(plan, NativePip)
    assert plan.commands == (
        PoetryCommand(
            "poetry", words("--no-root", "--only", "main"), {"POETRY_NO_INTERACTION": "1"}
        ),
    )
