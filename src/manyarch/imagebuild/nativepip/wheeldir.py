"""``pip wheel``: a wheelhouse filled on the host, as the image's pip fills it.

pip's wheel command resolves as ``install`` does but ignores what is
installed (``make_resolver``'s ``ignore_installed``); a requirement that is a
wheel is saved unchanged under its link's file name
(``save_linked_requirement``: ``shutil.copy`` of the download, or of the
``--find-links`` file with its mode, and never over a file of that name
already in the directory); an sdist or a project is built
(:mod:`.build`, cross-compiled for a foreign target) and the backend's wheel
copied in. The directory is made as ``os.makedirs`` makes it.
"""

from __future__ import annotations

import filecmp
import os
import posixpath
import shutil
import stat
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.imagebuild.nativepip.command import NativePipUnavailable, PipCommand, image_path
from manyarch.imagebuild.nativepip.pipline import check_formats, pins, read_line, read_options
from manyarch.imagebuild.nativepip.resolve import Resolved
from manyarch.imagebuild.nativepip.target import TargetFacts
from manyarch.sandbox.rootpath import resolve_in_root

#: pip's download (``open(path, "wb")``) and a backend's wheel under umask 022
_FILE_MODE = 0o644
_DIR_MODE = 0o755


@dataclass(frozen=True)
class Save:
    """One wheel to put in the directory: from where, under which name, with which mode."""

    source: Path
    name: str
    mode: int
    #: pip built it (copied over a file of that name); else a download pip keeps if present
    built: bool


@dataclass
class WheelJob:
    """One resolved ``pip wheel``: the wheels to save into ``wheel_dir`` (an image path)."""

    wheel_dir: str
    saves: list[Save]
    labels: list[str]
    #: ``pip wheel`` installs nothing: no wheel joins a later command's installed view
    wheels: list[Path] = field(default_factory=list)

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """Make the directory, save the wheels; what was saved (``name==version``)."""
        dest = _makedirs(rootfs, self.wheel_dir)
        for s in self.saves:
            there = dest / s.name
            if there.is_symlink() or (there.exists() and not there.is_file()):
                raise NativePipUnavailable(f"{self.wheel_dir}/{s.name} is not a file")
            if there.exists() and not s.built:
                continue  # pip's _check_download_dir: the file there is used as it is
            if there.exists():
                there.unlink()
            shutil.copyfile(s.source, there)
            os.chmod(there, s.mode)
        return self.labels


def _makedirs(rootfs: Path, path: str) -> Path:
    """``os.makedirs(path, exist_ok=True)`` in the image, umask 022; the host path."""
    missing: list[str] = []
    p = path
    while p != "/" and not resolve_in_root(rootfs, p).exists():
        missing.append(p)
        p = posixpath.dirname(p)
    for m in reversed(missing):
        host = resolve_in_root(rootfs, m)
        host.mkdir()
        os.chmod(host, _DIR_MODE)
    host = resolve_in_root(rootfs, path)
    if not host.is_dir():
        raise NativePipUnavailable(f"{path} is not a directory")
    return host


def link_filename(url: str) -> str:
    """pip's ``Link.filename``: the URL path's last part, unquoted."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(posixpath.basename(path.rstrip("/")))


def prepare_wheel(
    cmd: PipCommand,
    facts: TargetFacts,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
    cache_dir: Path,
    home: str,
    work: Path,
) -> WheelJob:
    """Read, resolve, fetch and build what ``pip wheel`` would save; nothing is written yet."""
    opts = read_options(cmd, facts, rootfs, env, workdir, cache_dir, home)
    only = check_formats(opts)
    wheel_dir = image_path(str(opts.get("wheel_dir") or "."), workdir)
    line = read_line(opts, only, facts, rootfs, workdir, cache_dir, work)
    request = line.request(pins=pins(line.roots))  # nothing installed is consulted
    resolved = line.resolve(request, facts, rootfs, cache_dir, work)
    sdists = {n for n, r in enumerate(resolved) if r.sdist}
    wheels, _ = line.fetch(resolved, facts, rootfs, cache_dir, work)
    dest = resolve_in_root(rootfs, wheel_dir)
    saves: list[Save] = []
    for n, (r, wheel) in enumerate(zip(resolved, wheels, strict=True)):
        built = n in sdists or not r.url  # an sdist, or a project the line names
        if built:
            saves.append(Save(wheel, wheel.name, _FILE_MODE, True))
            continue
        name = link_filename(r.url)
        mode = _FILE_MODE
        if r.url.startswith("file://"):  # a --find-links file: shutil.copy keeps its mode
            mode = stat.S_IMODE(os.stat(urllib.request.url2pathname(r.url[7:])).st_mode)
        there = dest / name
        if there.exists() and not (there.is_file() and filecmp.cmp(there, wheel, shallow=False)):
            raise NativePipUnavailable(
                f"{wheel_dir}/{name} exists with other content (pip would use that file)"
            )
        saves.append(Save(wheel, name, mode, False))
    return WheelJob(wheel_dir, saves, _labels(resolved))


def _labels(resolved: Sequence[Resolved]) -> list[str]:
    return [f"{r.name}=={r.version}" if r.version else r.name for r in resolved]
