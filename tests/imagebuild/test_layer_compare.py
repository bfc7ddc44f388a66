"""The file-by-file comparison finds every kind of difference (it is what the equivalence
tests rely on)."""

from __future__ import annotations

import importlib.util
import marshal
import tarfile

from tests.imagebuild.layer_compare import Entries, layer_differences, pyc_difference


def _pyc(source: str, filename: str) -> bytes:
    code = compile(source, filename, "exec")
    header = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little")
    return header + importlib.util.source_hash(source.encode()) + marshal.dumps(code)


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode, info.size = mode, len(data)
    return info, data


def test_equal_layers_have_no_difference() -> None:
    a: Entries = {"x/a.py": _file("x/a.py", b"x = 1\n")}
    assert layer_differences(a, dict(a)) == []


def test_every_difference_is_named() -> None:
    native: Entries = {
        "a": _file("a", b"one"),
        "b": _file("b", b"same", 0o755),
        "c": _file("c", b"x"),
        "p/__pycache__/m.cpython-311.pyc": _file("p", _pyc("x = 1\n", "/p/m.py")),
    }
    emulated: Entries = {
        "a": _file("a", b"two"),
        "b": _file("b", b"same", 0o644),
        "d": _file("d", b"x"),
        "p/__pycache__/m.cpython-311.pyc": _file("p", _pyc("x = 2\n", "/p/m.py")),
    }
    diffs = layer_differences(native, emulated)
    assert "a: contents differ" in diffs
    assert any(d.startswith("b: ") for d in diffs)
    assert "only native: c" in diffs and "only emulated: d" in diffs
    assert "p/__pycache__/m.cpython-311.pyc: pyc header differs" in diffs


def test_pycs_compare_code_and_filenames() -> None:
    one = _pyc("def f():\n    return 1\n", "/srv/m.py")
    assert pyc_difference(one, one) is None
    other_name = _pyc("def f():\n    return 1\n", "/tmp/m.py")
    assert pyc_difference(one, other_name) == "co_filename"
    assert pyc_difference(one, other_name, lambda f: f.replace("/tmp/", "/srv/")) is None


def test_timestamp_pycs_may_name_other_mtimes_only_when_asked() -> None:
    code = marshal.dumps(compile("def f():\n    return 1\n", "/srv/m.py", "exec"))

    def stamped(mtime: int, size: int = 24, flags: int = 0) -> bytes:
        head = importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
        return head + mtime.to_bytes(4, "little") + size.to_bytes(4, "little") + code

    one, later = stamped(1_700_000_000), stamped(1_700_000_060)
    assert pyc_difference(one, later) == "header"
    assert pyc_difference(one, later, any_mtime=True) is None
    assert pyc_difference(one, stamped(1_700_000_060, size=25), any_mtime=True) == "header"
    # a hash-based pyc's "mtime" is its source's hash: never ignored
    hashed = stamped(1, flags=3)
    assert pyc_difference(hashed, stamped(2, flags=3), any_mtime=True) == "header"
