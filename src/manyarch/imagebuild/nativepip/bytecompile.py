"""Byte-code for what a native install placed, as pip compiles it.

By a host interpreter of the image's exact version when there is one
(Debian's python3.11 is a Debian image's), else one of the same bytecode
magic; in the host sandbox, hash-checked pycs naming the image paths, a
cache keyed by the interpreter, the path and the source, shared by the
platforms of a build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from manyarch.bytecode import bytecode_magic, compile_argv, exact_python
from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.imagebuild.nativepip.place import Placed, add_pyc_rows
from manyarch.imagebuild.nativepip.target import TargetFacts
from manyarch.sandbox.rootpath import resolve_in_root


def compile_placed(
    root: Path,
    placed: Sequence[Placed],
    facts: TargetFacts,
    rootfs: Path,
    cache_dir: Path,
    *,
    link: bool = False,
) -> None:
    """Byte-compile the placed modules as pip does, and list their pycs in each RECORD.

    By a host interpreter of the image's exact version when there is one
    (Debian's python3.11 is the image's), else one of the same bytecode
    magic; in a sandbox, the pycs hash-checked and naming the image paths.
    Pycs are kept in a cache keyed by the interpreter, the image path and the
    source's hash. Without a suitable interpreter nothing is compiled (Python
    compiles at first import). ``link``: ``root`` is a tree thrown away once
    its layer is written, so cached pycs are hard-linked into it, not copied.
    """
    modules = [m for p in placed for m in p.modules]
    if not modules:
        return
    magic = bytecode_magic(resolve_in_root(rootfs, facts.stdlib))
    interp = exact_python(facts.python_version, magic) if magic is not None else None
    if interp is None:
        return
    sources: dict[str, str] = {}
    for p in placed:  # in install order: a later wheel's file replaced an earlier one's
        sources.update(p.sources)
    key_base = f"{interp[1]}\0{magic}\0".encode()
    keyed: list[tuple[str, Path, Path]] = []
    for m in dict.fromkeys(modules):
        src = resolve_in_root(root, m)
        source = sources.get(m) or hashlib.sha256(src.read_bytes()).hexdigest()
        h = hashlib.sha256(key_base + m.encode() + b"\0" + source.encode()).hexdigest()
        keyed.append(
            (m, Path(importlib.util.cache_from_source(str(src))), cache_dir / "pyc" / h[:2] / h)
        )
    todo = _from_cache(keyed, link)
    if todo:
        # the platforms of a build install the same pure modules at the same paths at
        # once: one compiles while the other waits, then takes the pycs from the cache
        lock = cache_dir / "pyc" / ".lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            todo = _from_cache(todo, link)
            if todo:
                _compile(interp[0], root, [m for m, _, _ in todo])
                for _, pyc, kept in todo:
                    if pyc.is_file():
                        os.chmod(pyc, 0o644)
                        kept.parent.mkdir(parents=True, exist_ok=True)
                        part = kept.with_name(f".{kept.name}.{os.getpid()}.{threading.get_ident()}")
                        shutil.copyfile(pyc, part)
                        os.chmod(part, 0o644)  # what a link to it gives
                        os.replace(part, kept)
    add_pyc_rows(root, placed)


def _from_cache(
    keyed: Sequence[tuple[str, Path, Path]], link: bool
) -> list[tuple[str, Path, Path]]:
    """Put the cached pycs in place (linked or copied); the modules still to compile."""
    todo = []
    made: set[Path] = set()
    for m, pyc, kept in keyed:
        if pyc.parent not in made:
            pyc.parent.mkdir(exist_ok=True)
            made.add(pyc.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pyc)  # whatever stands there is replaced, as py_compile replaces it
        if link:
            try:
                os.link(kept, pyc)
                continue
            except FileNotFoundError:
                todo.append((m, pyc, kept))
                continue
            except OSError:
                pass  # another file system: copied
        try:
            data = kept.read_bytes()
        except FileNotFoundError:
            todo.append((m, pyc, kept))
            continue
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(pyc, flags, 0o644), "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o644)  # whatever the umask
    return todo


def _compile(interp: str, root: Path, modules: Sequence[str]) -> None:
    from manyarch.sandbox.host import run_host_tool

    host_root = root.resolve()
    with tempfile.TemporaryDirectory(prefix="manyarch-compile-") as tmp:
        listing = Path(tmp) / "modules.list"
        listing.write_text("".join(f"{host_root}{m}\n" for m in modules))
        r = run_host_tool(
            # the other platform waits for these pycs: both cores (a process pool
            # costs more than it gives below a hundred modules)
            compile_argv(interp, host_root, listing, jobs=2 if len(modules) >= 100 else 1),
            env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
            readonly=[Path(tmp)],
            writable=[host_root],
        )
    if r.returncode not in (0, 1):  # 1: a module that does not compile, left as pip leaves it
        raise NativePipUnavailable(
            f"byte-compiling failed: {r.stderr.decode(errors='replace').strip()[-300:]}"
        )
