"""Place wheels into a rootfs exactly as the image's pip places them.

Mirrors ``pip/_internal/operations/install/wheel.py`` (``_install_wheel``):
the wheel's files in zip order, an existing file unlinked first (two
distributions that ship one file: the later one wins, as with pip),
``.data/<key>/`` mapped to the scheme, ``#!python`` in ``.data/scripts``
rewritten to ``sys.executable``, console and GUI scripts made from the image
pip's own template and shebang, ``INSTALLER`` ``pip\\n``, ``REQUESTED``,
``direct_url.json``, and ``RECORD`` as pip writes it (rows sorted, CRLF, pycs
listed without hash). Modes are what pip's umask (022) gives. Byte-code is
compiled in one batch once every wheel is placed (:func:`compile_placed`), by
a host interpreter of the image's exact version, in a sandbox.

:func:`install_order` is pip's (``get_installation_order``): it decides who
wins when two wheels write the same path.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import csv
import hashlib
import importlib.util
import io
import os
import posixpath
import re
import shutil
import stat
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path

from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.imagebuild.nativepip.target import TargetFacts
from manyarch.sandbox.rootpath import resolve_in_root

_FILE_MODE = 0o644
_EXEC_MODE = 0o755


def canonical(name: str) -> str:
    """PEP 503's normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> tuple[str, str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    return f"sha256={digest}", str(len(data))


def shebang(executable: str) -> bytes:
    """distlib's shebang for ``executable`` (the /bin/sh trick past 127 bytes or with a space)."""
    exe = executable.encode()
    if b" " not in exe and len(exe) + 3 <= 127:
        return b"#!" + exe + b"\n"
    return b"#!/bin/sh\n'''exec' " + exe + b' "$0" "$@"\n' + b"' '''"


def _console_specs(console: Mapping[str, str], xy: str) -> list[tuple[str, str]]:
    """pip's ``get_console_script_specs`` (pip and easy_install get versioned names)."""
    rest = dict(console)
    out: list[tuple[str, str]] = []
    pip_script = rest.pop("pip", None)
    if pip_script:
        out += [("pip", pip_script), (f"pip{xy.split('.')[0]}", pip_script)]
        out.append((f"pip{xy}", pip_script))
        for k in [k for k in rest if re.match(r"pip(\d+(\.\d+)?)?$", k)]:
            del rest[k]
    easy = rest.pop("easy_install", None)
    if easy:
        out += [("easy_install", easy), (f"easy_install-{xy}", easy)]
        for k in [k for k in rest if re.match(r"easy_install(-\d+\.\d+)?$", k)]:
            del rest[k]
    return out + list(rest.items())


def _entry_points(text: str) -> tuple[dict[str, str], dict[str, str]]:
    cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)

    def section(name: str) -> dict[str, str]:
        if not cp.has_section(name):
            return {}
        return {k.strip(): v.strip() for k, v in cp.items(name)}

    return section("console_scripts"), section("gui_scripts")


@dataclass
class Placed:
    """One placed wheel: its RECORD (host path), lib dir (image path) and modules to compile."""

    name: str
    record: Path
    lib: str
    modules: list[str] = field(default_factory=list)
    #: sha256 (hex) of each ``.py`` file written, by image path (the pyc cache's key)
    sources: dict[str, str] = field(default_factory=dict)


def wheel_metadata(wheel: Path) -> Mapping[str, object]:
    """``Name`` and ``Requires-Dist`` of a wheel (METADATA), and its files."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(meta).decode("utf-8", "replace"))
    return {"name": msg["Name"], "requires": msg.get_all("Requires-Dist") or [], "files": names}


def place_wheel(
    rootfs: Path,
    wheel: Path,
    scheme: Mapping[str, str],
    facts: TargetFacts,
    *,
    executable: str,
    requested: bool,
    direct_url: str | None = None,
) -> Placed:
    """Install ``wheel`` into ``rootfs`` with ``scheme`` (image paths), as pip would."""
    with zipfile.ZipFile(wheel) as zf:
        placer = _Placer(rootfs, wheel, zf, scheme, executable)
        placer.files()
        placer.scripts(facts)
        extra = [("INSTALLER", b"pip\n")]
        if direct_url is not None:
            extra.append(("direct_url.json", direct_url.encode()))
        if requested:
            extra.append(("REQUESTED", b""))
        placer.metadata(extra)
        record = placer.record()
    modules = {posixpath.normpath(posixpath.join(placer.lib, p)) for p in placer.installed.values()}
    return Placed(
        canonical(placer.name),
        record,
        placer.lib,
        sorted(m for m in modules if m.endswith(".py")),
        placer.sources,
    )


class _Placer:
    """One wheel placed as ``pip/_internal/operations/install/wheel.py`` places it."""

    def __init__(
        self,
        rootfs: Path,
        wheel: Path,
        zf: zipfile.ZipFile,
        scheme: Mapping[str, str],
        executable: str,
    ) -> None:
        self.rootfs, self.wheel, self.zf, self.executable = rootfs, wheel, zf, executable
        self.names = zf.namelist()
        self.info_dir = next(
            n.split("/")[0] for n in self.names if n.split("/")[0].endswith(".dist-info")
        )
        wheel_meta = Parser().parsestr(zf.read(f"{self.info_dir}/WHEEL").decode())
        meta = zf.read(f"{self.info_dir}/METADATA").decode("utf-8", "replace")
        self.name = str(Parser().parsestr(meta)["Name"])
        purelib = wheel_meta.get("Root-Is-Purelib", "").lower() == "true"
        self.lib = scheme["purelib" if purelib else "platlib"]
        self.scheme = {k: v.replace("@DIST@", self.name) for k, v in scheme.items()}
        try:
            entry_points = zf.read(f"{self.info_dir}/entry_points.txt").decode()
            self.console, self.gui = _entry_points(entry_points)
        except KeyError:
            self.console, self.gui = {}, {}
        #: wheel RECORD path -> installed RECORD path (relative to lib)
        self.installed: dict[str, str] = {}
        self.changed: set[str] = set()
        self.generated: list[str] = []
        self.sources: dict[str, str] = {}
        self._dirs: dict[str, Path] = {}
        self._made: set[Path] = set()
        #: directories this wheel created: nothing stands in them but what it wrote
        self._fresh: set[Path] = set()
        self._written: set[Path] = set()
        self._umask = process_umask()

    def host(self, image_path: str) -> Path:
        """Where an image path is on the host (each directory resolved once)."""
        d = posixpath.dirname(image_path)
        if d not in self._dirs:
            self._dirs[d] = resolve_in_root(self.rootfs, d)
        return self._dirs[d] / posixpath.basename(image_path)

    def rel(self, image_path: str) -> str:
        """A path as RECORD lists it: relative to the lib directory."""
        return posixpath.relpath(image_path, self.lib)

    def files(self) -> None:
        """The wheel's files in pip's order: lib, then .data, then .data/scripts."""
        names = [n for n in self.names if not n.endswith("/")]
        data = [n for n in names if _is_data(n)]
        scripts = [n for n in data if _is_script(n)]
        ordered = [n for n in names if not _is_data(n)] + [n for n in data if n not in scripts]
        for n in ordered + scripts:
            dest = self._destination(n, n in scripts)
            if dest is not None:
                self._file(n, dest, n in scripts)

    def _destination(self, n: str, is_script: bool) -> str | None:
        if _is_data(n):
            parts = posixpath.normpath(n).split("/", 2)
            if len(parts) < 3 or parts[1] not in self.scheme:
                raise NativePipUnavailable(f"{self.wheel.name}: unexpected file {n}")
            base = self.scheme[parts[1]]
            dest = posixpath.normpath(posixpath.join(base, parts[2]))
            if is_script and _wrapper_of(posixpath.basename(dest), self.console, self.gui):
                return None  # setuptools' own wrappers: pip writes its own
        else:
            base = self.lib
            dest = posixpath.normpath(posixpath.join(self.lib, n))
        if not (dest + "/").startswith(base.rstrip("/") + "/"):
            raise NativePipUnavailable(f"{self.wheel.name}: {n} would be written outside {base}")
        return dest

    def _file(self, n: str, dest: str, is_script: bool) -> None:
        target = self.host(dest)
        if target.parent not in self._made:
            self._mkdir(target.parent)
            self._made.add(target.parent)
        if target.parent not in self._fresh or target in self._written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)  # pip unlinks first: a file two wheels ship is replaced
        self._written.add(target)
        zi = self.zf.getinfo(n)
        data = self.zf.read(zi)
        if is_script and data.startswith(b"#!python"):
            rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
            data = b"#!" + self.executable.encode() + b"\n" + rest
            self.changed.add(self.rel(dest))
        mode = zi.external_attr >> 16
        mode = _EXEC_MODE if mode & 0o111 and stat.S_ISREG(mode) else _FILE_MODE
        _write(target, data, mode, chmod=self._umask is None or bool(self._umask & mode))
        self.installed[n] = self.rel(dest)
        if dest.endswith(".py"):
            self.sources[dest] = hashlib.sha256(data).hexdigest()

    def _mkdir(self, d: Path) -> None:
        """``mkdir -p``, the directories it made noted as fresh."""
        try:
            os.mkdir(d)
        except FileExistsError:
            return
        except FileNotFoundError:
            self._mkdir(d.parent)
            os.mkdir(d)
        self._fresh.add(d)

    def scripts(self, facts: TargetFacts) -> None:
        """Console and GUI scripts, from the image pip's template, with its shebang."""
        head = shebang(self.executable)
        specs = [(s, v) for s, v in _console_specs(self.console, facts.xy)]
        specs += list(self.gui.items())
        for script, value in specs:
            module, _, func = value.partition(":")
            func = func.strip()
            body = facts.script_template % {
                "module": module.strip(),
                "import_name": func.split(".")[0],
                "func": func,
            }
            dest = posixpath.join(self.scheme["scripts"], script)
            target = self.host(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.write_bytes(head + body.encode())
            os.chmod(target, _EXEC_MODE)
            self.generated.append(dest)

    def metadata(self, files: Sequence[tuple[str, bytes]]) -> None:
        """INSTALLER, direct_url.json, REQUESTED in the dist-info directory."""
        dinfo = posixpath.join(self.lib, self.info_dir)
        for fname, content in files:
            target = self.host(f"{dinfo}/{fname}")
            target.write_bytes(content)
            os.chmod(target, _FILE_MODE)
            self.generated.append(f"{dinfo}/{fname}")

    def record(self) -> Path:
        """pip's RECORD: the wheel's rows renamed, changed ones re-hashed, generated added."""
        rows: list[tuple[str, str, str]] = []
        installed = dict(self.installed)
        text = self.zf.read(f"{self.info_dir}/RECORD").decode()
        for row in csv.reader(text.splitlines()):
            if not row:
                continue
            path = installed.pop(row[0], row[0])
            if path in self.changed:
                digest, size = _record_hash(self.host(posixpath.join(self.lib, path)).read_bytes())
            else:
                digest = row[1] if len(row) > 1 else ""
                size = row[2] if len(row) > 2 else ""
            rows.append((path, digest, size))
        for g in self.generated:
            rows.append((self.rel(g), *_record_hash(self.host(g).read_bytes())))
        rows += [(p, "", "") for p in installed.values()]
        record = self.host(f"{posixpath.join(self.lib, self.info_dir)}/RECORD")
        _write_record(record, rows)
        return record


def _write(path: Path, data: bytes, mode: int, *, chmod: bool = True) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if chmod:
            os.fchmod(fd, mode)  # the umask took bits the mode has
    finally:
        os.close(fd)


def process_umask() -> int | None:
    """The process's umask, read without setting it (Linux's /proc), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_data(name: str) -> bool:
    return name.split("/", 1)[0].endswith(".data")


def _is_script(name: str) -> bool:
    parts = name.split("/", 2)
    return len(parts) > 2 and parts[0].endswith(".data") and parts[1] == "scripts"


def _wrapper_of(name: str, console: Mapping[str, str], gui: Mapping[str, str]) -> bool:
    lower = name.lower()
    match = name
    if lower.endswith((".exe", ".pya")):
        match = name[:-4]
    elif lower.endswith("-script.py"):
        match = name[:-10]
    return match in console or match in gui


def _write_record(path: Path, rows: Iterable[tuple[str, str, str]]) -> None:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(sorted((a, b, str(c)) for a, b, c in rows))
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    os.chmod(path, _FILE_MODE)


def add_pyc_rows(rootfs: Path, placed: Sequence[Placed]) -> None:
    """List each compiled module's pyc in its RECORD (``path,,``), as pip does."""
    for p in placed:
        pycs = []
        for m in p.modules:
            pyc = importlib.util.cache_from_source(m)
            if (rootfs / pyc.lstrip("/")).is_file():
                pycs.append((posixpath.relpath(pyc, p.lib), "", ""))
        if not pycs:
            continue
        rows = [
            (r[0], r[1] if len(r) > 1 else "", r[2] if len(r) > 2 else "")
            for r in csv.reader(p.record.read_text(encoding="utf-8").splitlines())
            if r
        ]
        _write_record(p.record, rows + [r for r in pycs if r not in rows])


def uninstall(rootfs: Path, site: str, name: str) -> bool:
    """Remove ``name``'s installed distribution from ``site`` (an image path), by its RECORD.

    pip uninstalls only in the scheme's own directory (Debian's pip leaves
    /usr/lib/python3/dist-packages alone); True when something was removed.
    """
    want = canonical(name)
    host_site = resolve_in_root(rootfs, site)
    if not host_site.is_dir():
        return False
    removed = False
    root = rootfs.resolve()
    for info in sorted(host_site.glob("*.dist-info")):
        if canonical(info.name[: -len(".dist-info")].rsplit("-", 1)[0]) != want:
            continue
        try:
            rows = list(csv.reader((info / "RECORD").read_text().splitlines()))
        except OSError as e:
            raise NativePipUnavailable(f"{info.name} has no RECORD: pip cannot uninstall it") from e
        dirs: set[Path] = set()
        for row in rows:
            if not row:
                continue
            p = Path(os.path.normpath(host_site / row[0]))
            if root not in p.parents:
                continue
            for q in (p, *_pycs_of(p)):
                if q.is_file() or q.is_symlink():
                    q.unlink()
                    dirs.add(q.parent)
        shutil.rmtree(info, ignore_errors=True)
        for d in sorted(dirs, key=lambda d: -len(d.parts)):
            _remove_empty(d, host_site)
        removed = True
    return removed


def _pycs_of(p: Path) -> list[Path]:
    if p.suffix != ".py":
        return []
    cache = p.parent / "__pycache__"
    return sorted(cache.glob(f"{p.stem}.*.pyc")) if cache.is_dir() else []


def _remove_empty(d: Path, stop: Path) -> None:
    while d != stop and stop in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def install_order(
    wheels: Sequence[Path], roots: Sequence[str], markers: Mapping[str, str]
) -> list[int]:
    """Indexes of ``wheels`` in the order pip installs them (``get_installation_order``).

    pip weighs its resolution graph (``name[extra]`` nodes as its resolver
    has them): leaves pruned first, then the longest path from the root, and
    installs by (weight, name) descending. Only matters when wheels overlap.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    meta: dict[str, tuple[int, list[Requirement]]] = {}
    for i, w in enumerate(wheels):
        m = wheel_metadata(w)
        reqs = []
        for r in m["requires"]:  # type: ignore[attr-defined]
            try:
                reqs.append(Requirement(str(r)))
            except InvalidRequirement:
                continue
        meta[canonical(str(m["name"]))] = (i, reqs)
    graph: dict[str | None, set[str]] = {None: set()}

    def node(req: Requirement) -> str:
        name = canonical(req.name)
        extras = sorted(canonical(e) for e in req.extras)
        key = f"{name}[{','.join(extras)}]" if extras else name
        if key in graph:
            return key
        graph[key] = set()
        envs = [dict(markers, extra=e) for e in extras] if extras else [dict(markers, extra="")]
        if extras:
            graph[key].add(node(Requirement(req.name)))
        for dep in meta.get(name, (0, []))[1]:
            if dep.marker is None or any(dep.marker.evaluate(e) for e in envs):
                graph[key].add(node(dep))
        return key

    for r in roots:
        try:
            req = Requirement(r)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate(dict(markers, extra="")):
            graph[None].add(node(req))
    for name in meta:  # wheels no root reaches (pins of a lock): under the root
        if name not in graph:
            graph[None].add(node(Requirement(name)))
    keys = {k for k in graph if k is not None and k in meta}
    weights: dict[str, int] = {}
    g = {k: set(v) for k, v in graph.items()}
    while True:
        leaves = {k for k in g if k is not None and not (g[k] & g.keys())}
        if not leaves:
            break
        for leaf in leaves:
            if leaf in keys:
                weights[leaf] = len(g) - 1
        for leaf in leaves:
            del g[leaf]
    path: set[str | None] = set()

    def visit(n: str | None) -> None:
        if n in path:
            return
        path.add(n)
        for c in g.get(n, ()):
            if c in g:
                visit(c)
        path.remove(n)
        if n in keys:
            assert n is not None
            weights[n] = max(weights.get(n, 0), len(path))

    visit(None)
    order = sorted(keys, key=lambda k: (weights.get(k, 0), k), reverse=True)
    return [meta[k][0] for k in order]
