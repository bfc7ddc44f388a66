"""What an image holds, read from its layers: Debian packages and Python distributions.

The layers are read in order as tar streams (nothing is unpacked) and only
the files that name packages are kept, with the OCI whiteouts applied
(``.wh.NAME`` deletes NAME of the lower layers, ``.wh..wh..opq`` what they
had in its directory): dpkg's database (``var/lib/dpkg/status``, and
``status.d/`` as distroless images keep it), ``os-release``, and every
``*.dist-info`` directory's ``METADATA``, ``WHEEL``, ``INSTALLER`` and
``direct_url.json``. So the SBOM lists what the image's file system holds,
whatever wrote it: the base, apt in a RUN, pip natively or under emulation.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import BinaryIO

from manyarch.debian.deb import Package, dpkg_packages
from manyarch.errors import LayerError
from manyarch.layers import OPAQUE_MARKER, WHITEOUT_PREFIX, open_decompressed

_DIST_INFO_FILES = ("METADATA", "WHEEL", "INSTALLER", "direct_url.json")
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_STATUS = "var/lib/dpkg/status"
_STATUS_D = "var/lib/dpkg/status.d/"
#: A metadata file larger than this is not a package's (a guard against hostile layers).
_MAX_FILE = 16 << 20


def _wanted(path: str) -> bool:
    if path == _STATUS or path in _OS_RELEASE:
        return True
    if path.startswith(_STATUS_D) and "/" not in path[len(_STATUS_D) :]:
        return not path.endswith(".md5sums")
    parent, name = posixpath.split(path)
    return name in _DIST_INFO_FILES and parent.endswith(".dist-info")


@dataclass
class Files:
    """The kept files of an image: path -> bytes, or -> ``("link", target)`` for a symlink."""

    data: dict[str, bytes | tuple[str, str]] = field(default_factory=dict)
    #: every directory above a kept file (rebuilt after a change): most entries of a
    #: layer are checked against it, few ever match
    _dirs: set[str] | None = None

    def delete(self, path: str) -> None:
        """``path`` and everything under it."""
        if self.data.pop(path, None) is not None:
            self._dirs = None
        if self._dirs is None:
            self._dirs = {d for p in self.data for d in _parents(p)}
        if path not in self._dirs:
            return
        prefix = path + "/"
        for p in [p for p in self.data if p.startswith(prefix)]:
            del self.data[p]
        self._dirs = None

    def clear(self, directory: str) -> None:
        """What the lower layers have under ``directory`` ("" the root)."""
        if directory:
            self.delete(directory)
        else:
            self.data.clear()
            self._dirs = None

    def update(self, added: Mapping[str, bytes | tuple[str, str]]) -> None:
        """Add a layer's kept files."""
        self.data.update(added)
        self._dirs = None

    def read(self, path: str, hops: int = 0) -> bytes | None:
        """A kept file's bytes, following a symlink between kept files."""
        got = self.data.get(path)
        if isinstance(got, tuple):
            if hops > 8:
                return None
            target = got[1]
            where = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.join(posixpath.dirname(path), target)
            )
            return self.read(posixpath.normpath(where), hops + 1)
        return got


def _parents(path: str) -> Iterable[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def _clean(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def _apply_layer(files: Files, stream: BinaryIO, name: str) -> None:
    added: dict[str, bytes | tuple[str, str]] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for m in tar:
                path = _clean(m.name)
                base = posixpath.basename(path)
                parent = posixpath.dirname(path)
                if base == OPAQUE_MARKER:
                    files.clear(parent)
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    files.delete(posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
                    continue
                if not m.isdir():
                    files.delete(path)  # a file where a directory was hides its tree
                if not _wanted(path):
                    continue
                if m.issym():
                    added[path] = ("link", m.linkname)
                elif m.islnk():
                    target = _clean(m.linkname)
                    got = added.get(target, files.data.get(target))
                    if got is not None:
                        added[path] = got
                elif m.isfile() and m.size <= _MAX_FILE:
                    f = tar.extractfile(m)
                    if f is not None:
                        added[path] = f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LayerError(f"layer {name}: cannot be read ({e})") from e
    files.update(added)


def read_files(layers: Sequence[tuple[str, Path]]) -> Files:
    """The kept files of a stack of layer blobs (``(name, path)``, lowest first)."""
    files = Files()
    for name, path in layers:
        with open(path, "rb") as f:
            _apply_layer(files, open_decompressed(f), name)
    return files


@dataclass(frozen=True)
class PythonDist:
    """One installed Python distribution (a ``*.dist-info`` directory)."""

    name: str
    version: str
    path: str
    license_expression: str = ""
    license: str = ""
    classifiers: tuple[str, ...] = ()
    homepage: str = ""
    #: ``Tag:`` lines of WHEEL (``cp312-cp312-manylinux_2_17_x86_64``)
    tags: tuple[str, ...] = ()
    installer: str = ""
    #: direct_url.json's ``url`` (an install from a URL or a path), else ""
    url: str = ""

    @property
    def normalized_name(self) -> str:
        """PEP 503's name: lower case, runs of ``-_.`` as one ``-``."""
        return re.sub(r"[-_.]+", "-", self.name).lower()


@dataclass(frozen=True)
class Contents:
    """What :func:`scan` found in one image."""

    debian: tuple[Package, ...]
    python: tuple[PythonDist, ...]
    os_release: Mapping[str, str]

    @property
    def distro(self) -> str:
        """``debian-12`` (``ID-VERSION_ID``), or "" when os-release says nothing."""
        rel = self.os_release
        return f"{rel.get('ID', 'debian')}-{rel['VERSION_ID']}" if rel.get("VERSION_ID") else ""


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines, quotes removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip("\"'")
    return out


def python_dist(path: str, files: Files) -> PythonDist | None:
    """The distribution of one ``*.dist-info`` directory, or None without a usable METADATA."""
    meta = files.read(f"{path}/METADATA")
    if meta is None:
        return None
    msg = HeaderParser().parsestr(meta.decode("utf-8", "replace"))
    name, version = msg.get("Name", "").strip(), msg.get("Version", "").strip()
    if not name or not version:
        return None
    homepage = (msg.get("Home-page") or "").strip()
    for url in msg.get_all("Project-URL") or ():
        label, _, link = str(url).partition(",")
        if not homepage and label.strip().lower() in ("homepage", "home", "source"):
            homepage = link.strip()
    wheel = files.read(f"{path}/WHEEL") or b""
    tags = tuple(
        line.split(":", 1)[1].strip()
        for line in wheel.decode("utf-8", "replace").splitlines()
        if line.startswith("Tag:")
    )
    url = ""
    direct = files.read(f"{path}/direct_url.json")
    if direct:
        try:
            url = str(json.loads(direct).get("url", ""))
        except (ValueError, AttributeError):
            url = ""
    license_text = (msg.get("License") or "").strip()
    return PythonDist(
        name=name,
        version=version,
        path="/" + path,
        license_expression=(msg.get("License-Expression") or "").strip(),
        license=license_text if "\n" not in license_text else "",
        classifiers=tuple(str(c).strip() for c in msg.get_all("Classifier") or ()),
        homepage=homepage,
        tags=tags,
        installer=(files.read(f"{path}/INSTALLER") or b"").decode("utf-8", "replace").strip(),
        url=url,
    )


def contents(files: Files) -> Contents:
    """Packages and distributions of an image's kept files."""
    status = files.read(_STATUS)
    debian = dpkg_packages(status.decode("utf-8", "replace").split("\n\n")) if status else []
    distroless = [files.read(p) for p in sorted(files.data) if p.startswith(_STATUS_D)]
    debian += dpkg_packages(
        [d.decode("utf-8", "replace") for d in distroless if d is not None], assume_installed=True
    )
    rel: dict[str, str] = {}
    for p in _OS_RELEASE:
        got = files.read(p)
        if got is not None:
            rel = parse_os_release(got.decode("utf-8", "replace"))
            break
    dirs = sorted({posixpath.dirname(p) for p in files.data if p.endswith("/METADATA")})
    python = [d for d in (python_dist(p, files) for p in dirs) if d is not None]
    return Contents(tuple(debian), tuple(python), rel)


def scan(layers: Sequence[tuple[str, Path]]) -> Contents:
    """The packages and distributions a stack of layer blobs holds."""
    return contents(read_files(layers))
