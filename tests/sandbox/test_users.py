"""Users and groups resolved from the rootfs's own /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

from manyarch.sandbox.users import Ids, resolve_user


def test_user_supplementary_groups(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc/group").write_text("app:x:1000:\nstaff:x:50:root,app\naudio:x:29:bob\n")
    assert resolve_user(tmp_path, "app").groups == (50,)
    # an explicit group replaces them, as runc does
    assert resolve_user(tmp_path, "app:audio") == Ids(1000, 29, "/home/app", ())


def test_a_numeric_uid_without_an_entry(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    # a process gets gid 0 (runc); a file operation (COPY --chown) the uid as gid (BuildKit)
    assert resolve_user(tmp_path, "4242", runtime=True) == Ids(4242, 0, "/")
    assert resolve_user(tmp_path, "4242") == Ids(4242, 4242, "/")
    assert resolve_user(tmp_path, "4242:7", runtime=True) == Ids(4242, 7, "/")
