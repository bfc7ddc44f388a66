"""User and group lookups read the image's own files inside its root: a symlink planted
in the image never leads to the host's, a FIFO never hangs, a malformed line is named."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from manyarch.errors import SandboxError
from manyarch.sandbox.users import Ids, resolve_user

HOST_PASSWD = "evil:x:1234:1234::/host-home:/bin/sh\n"
HOST_GROUP = "hostgrp:x:4321:evil\n"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory standing for the host's /etc: its entries must never be read."""
    h = tmp_path / "host-etc"
    h.mkdir()
    (h / "passwd").write_text(HOST_PASSWD)
    (h / "group").write_text(HOST_GROUP)
    return h


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    return r


def _plant(root: Path, host: Path, how: str) -> None:
    etc = root / "etc"
    if how == "passwd-absolute":
        os.symlink(host / "passwd", etc / "passwd")
        os.symlink(host / "group", etc / "group")
    elif how == "etc-absolute":
        etc.rmdir()
        os.symlink(host, etc)
    elif how == "passwd-relative":
        up = "../" * (len(etc.parts) + 2)
        os.symlink(up + str(host / "passwd").lstrip("/"), etc / "passwd")
        os.symlink(up + str(host / "group").lstrip("/"), etc / "group")


@pytest.mark.parametrize("how", ["passwd-absolute", "etc-absolute", "passwd-relative"])
def test_a_planted_symlink_never_reads_the_hosts_passwd(root: Path, host: Path, how: str) -> None:
    _plant(root, host, how)
    with pytest.raises(SandboxError, match="unable to find user evil"):
        resolve_user(root, "evil")
    with pytest.raises(SandboxError, match="unable to find group hostgrp"):
        resolve_user(root, "0:hostgrp")
    assert resolve_user(root, "1234") == Ids(1234, 1234, "/")


def test_a_link_inside_the_image_is_followed_inside_it(root: Path) -> None:
    (root / "usr/share").mkdir(parents=True)
    (root / "usr/share/passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    os.symlink("/usr/share/passwd", root / "etc/passwd")
    assert resolve_user(root, "app") == Ids(1000, 1000, "/home/app")


def test_a_fifo_for_passwd_does_not_hang(root: Path) -> None:
    os.mkfifo(root / "etc/passwd")
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(_try(root, "app")), daemon=True)
    t.start()
    t.join(timeout=10)
    if t.is_alive():  # unblock the reader so the test process can end
        with open(root / "etc/passwd", "w"):
            pass
        pytest.fail("reading a FIFO planted as /etc/passwd hung")
    assert isinstance(out[0], SandboxError) and "passwd" in str(out[0])


def _try(root: Path, spec: str) -> object:
    try:
        return resolve_user(root, spec)
    except SandboxError as e:
        return e


@pytest.mark.parametrize(
    "passwd, group, spec, words",
    [
        ("app:x:abc:1000::/home/app:/bin/sh\n", "", "app", ["/etc/passwd", "line 1", "abc"]),
        ("r:x:0:0::/:/bin/sh\napp:x:1000:zz::/:/bin/sh\n", "", "app", ["line 2", "zz"]),
        ("app:x:1000:1000::/:/bin/sh\n", "grp:x:9x:\n", "app:grp", ["/etc/group", "9x"]),
        ("app:x:99999999999:1::/:/bin/sh\n", "", "app", ["99999999999"]),
    ],
)
def test_a_malformed_entry_is_a_clear_error(
    root: Path, passwd: str, group: str, spec: str, words: list[str]
) -> None:
    (root / "etc/passwd").write_text(passwd)
    (root / "etc/group").write_text(group)
    with pytest.raises(SandboxError) as caught:
        resolve_user(root, spec)
    for word in words:
        assert word in caught.value.message


def test_a_uid_out_of_range_is_refused(root: Path) -> None:
    with pytest.raises(SandboxError, match="4294967296"):
        resolve_user(root, "4294967296")


def test_malformed_lines_that_do_not_match_are_skipped(root: Path) -> None:
    (root / "etc/passwd").write_text("garbage\nbad:x:q:q::/:/bin/sh\napp:x:7:8::/a:/bin/sh\n")
    assert resolve_user(root, "app") == Ids(7, 8, "/a")
