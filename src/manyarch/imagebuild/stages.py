"""The files of a platform's stages, made only when a step needs them.

A stage is a list of layers until a step needs its files: then its rootfs is
an overlayfs view whose lower directory is the base image unpacked once per
manifest digest (:mod:`manyarch.rootfs`, shared with ``manyarch run``), with
the layers above it applied. Until then a COPY or WORKDIR is written in a
*sparse* tree holding only the directories on the way to its destination,
their metadata read from the base tree and the layer headers
(:func:`layer_index`): the layer is the same bytes, and a rebuild after an
edit of the app unpacks nothing.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from manyarch import dockerfile as df
from manyarch.images import ResolvedImage
from manyarch.layers import WHITEOUT_PREFIX, Snapshot, unpack
from manyarch.layers.compress import open_decompressed
from manyarch.layers.tarscan import Member, ScanUnsupported, scan
from manyarch.layers.unpack import TAR_STREAM, LayerSource, member_checked
from manyarch.layout import Layout
from manyarch.oci.manifest import Descriptor, ImageConfig
from manyarch.oci.platform import Platform
from manyarch.rootfs import COMPLETE, View, cached_path, unpacked


@dataclass
class StageState:
    """One stage of one platform: its config and layers, and its rootfs once made."""

    directory: Path
    config: ImageConfig
    layers: list[Descriptor]
    base_name: str = ""
    base_digest: str = ""
    #: The base image whose unpacked tree is the bottom of the rootfs (None: scratch).
    image: ResolvedImage | None = None
    #: How many of ``layers`` that tree holds.
    base_layers: int = 0
    #: The rootfs, once made; ``applied`` of ``layers`` are in it.
    made: bool = False
    applied: int = 0

    @property
    def rootfs(self) -> Path:
        """Where the rootfs is (once made)."""
        return self.directory / "rootfs"


class NeedRootfs(Exception):
    """The step cannot be written without the stage's rootfs."""


@dataclass(frozen=True)
class PathMeta:
    """What a layer header (or the base tree) says of one path."""

    kind: str  # "dir", "symlink" or "other"
    mode: int
    uid: int
    gid: int
    mtime: int
    xattrs: bool = False


@dataclass
class LayerIndex:
    """The paths of one layer blob: entries, whiteouts, opaque directories."""

    entries: dict[str, PathMeta] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)
    #: every member's name as the tar has it and its bytes in the uncompressed
    #: stream (start, end), for a partial read; None when ``tarfile`` read the layer
    spans: list[tuple[str, int, int]] | None = None
    #: the bytes of members a scan was asked to keep, by start offset (until handed over)
    grabbed: dict[int, bytes] = field(default_factory=dict)

    def add(self, name: str, kind: str, mode: int, uid: int, gid: int, mtime: float,
            xattrs: bool) -> None:  # fmt: skip
        """One member (its name as the tar has it)."""
        name = posixpath.normpath("/" + name).lstrip("/")
        if not name:
            return
        parent, base = posixpath.split(name)
        if base == ".wh..wh..opq":
            self.opaque.add(parent)
        elif base.startswith(".wh."):
            self.hidden.add(posixpath.join(parent, base[4:]))
        else:
            self.entries[name] = PathMeta(kind, mode & 0o7777, uid, gid, int(mtime), xattrs)


_index_memo: dict[str, LayerIndex] = {}
_index_lock = threading.Lock()


#: The bytes a platform's layer scans keep for later partial trees, at most, and of one member.
_GRAB_LIMIT = 64 << 20
_GRAB_MEMBER = 16 << 20


def layer_index(
    store: Layout,
    desc: Descriptor,
    *,
    grab: Callable[[tuple[str, ...]], bool] | None = None,
    grabbed: dict[int, bytes] | None = None,
    limit: int = _GRAB_LIMIT,
) -> LayerIndex:
    """Read a layer's headers (once per digest in this process).

    When it is read here, the bytes of the members ``grab`` takes (and of
    whiteouts), up to ``limit`` bytes, go into ``grabbed`` by their start
    offset: a partial tree of those is then made without reading the blob again.
    """
    key = str(desc.digest)
    with _index_lock:
        if key in _index_memo:
            return _index_memo[key]
    total = 0

    def take(m: Member) -> bool:
        nonlocal total
        size = m.end - m.start
        if grab is None or size > _GRAB_MEMBER or total + size > limit:
            return False
        parts = _parts(m.name)
        if parts and (parts[-1].startswith(WHITEOUT_PREFIX) or grab(parts)):
            total += size
            return True
        return False

    try:
        idx = _scanned(store, desc, take if grab is not None and grabbed is not None else None)
    except ScanUnsupported:
        idx = _read_by_tarfile(store, desc)
    else:
        if grabbed is not None:
            grabbed.update(idx.grabbed)
        idx.grabbed = {}  # the memo keeps no bytes
    with _index_lock:
        _index_memo[key] = idx
    return idx


def _parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.split("/") if p not in ("", "."))


def _scanned(
    store: Layout, desc: Descriptor, take: Callable[[Member], bool] | None = None
) -> LayerIndex:
    idx = LayerIndex(spans=[])
    assert idx.spans is not None
    with open(store.blob_path(desc.digest), "rb") as f, open_decompressed(f) as stream:
        for m in scan(stream, take):
            kind = "dir" if m.isdir() else "symlink" if m.issym() else "other"
            xattrs = any(k.startswith("SCHILY.xattr.") for k in m.pax)
            idx.add(m.name, kind, m.mode, m.uid, m.gid, m.mtime, xattrs)
            idx.spans.append((m.name, m.start, m.end))
            if m.raw is not None:
                idx.grabbed[m.start] = m.raw
    return idx


def _read_by_tarfile(store: Layout, desc: Descriptor) -> LayerIndex:
    idx = LayerIndex()
    with (
        open(store.blob_path(desc.digest), "rb") as f,
        open_decompressed(f) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tf,
    ):
        for m in tf:
            kind = "dir" if m.isdir() else "symlink" if m.issym() else "other"
            xattrs = any(k.startswith("SCHILY.xattr.") for k in m.pax_headers)
            idx.add(m.name, kind, m.mode, m.uid, m.gid, m.mtime, xattrs)
    return idx


def kept_spans(
    idx: LayerIndex, keep: Callable[[tuple[str, ...]], bool]
) -> list[tuple[int, int]] | None:
    """The byte ranges of the members a partial unpack with ``keep`` reads (see
    :func:`manyarch.layers.unpack`'s ``spans``): None when the index has none."""
    if idx.spans is None:
        return None
    out: list[tuple[int, int]] = []
    for name, start, end in idx.spans:
        parts = _parts(name)
        if not (parts and (parts[-1].startswith(WHITEOUT_PREFIX) or keep(parts))):
            # a name the unpacker refuses is read, so that it still raises; only a
            # long or odd name can be one (a character is at most 4 bytes)
            odd = len(name) >= 1024 or any(len(p) >= 64 for p in parts) or ".." in parts
            if not ((odd or "\0" in name or name.startswith("/")) and member_checked(name)):
                continue
        out.append((start, end))
    return out


def ancestors(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def image_path(path: str) -> str:
    """An absolute image path as a relative one; :class:`NeedRootfs` if it has ``..``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise NeedRootfs()
    return "/".join(parts)


class StageTrees:
    """Makes the rootfs of one platform's stages, and sparse trees before one is needed."""

    def __init__(
        self,
        store: Layout,
        directory: Path,
        platform: Platform,
        note: Callable[[str], None],
        prefetch: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.dir = directory
        self.platform = platform
        #: Records rootfs work (:attr:`BuildResult.rootfs_work`).
        self.note = note
        self.views: list[View] = []
        self._sparse = 0
        self._removing: list[threading.Thread] = []
        #: what partial trees will read (interceptors' patterns): kept when a layer is scanned
        self._prefetch = pattern_filter(prefetch) if prefetch else None
        self._grabbed: dict[str, dict[int, bytes]] = {}

    def index(self, desc: Descriptor) -> LayerIndex:
        """The layer's index (:func:`layer_index`), the members to prefetch kept."""
        held = sum(len(b) for g in self._grabbed.values() for b in g.values())
        grabbed = self._grabbed.setdefault(str(desc.digest), {})
        limit = _GRAB_LIMIT - held  # for all of this platform's layers
        return layer_index(self.store, desc, grab=self._prefetch, grabbed=grabbed, limit=limit)

    def close(self) -> None:
        """Unmount every view made for this platform (also after a failure); trees gone."""
        for v in self.views:
            v.remove()
        self.views.clear()
        for t in self._removing:
            t.join()
        self._removing.clear()

    def discard(self, root: Path) -> None:
        """Remove a tree no step reads any more, in the background (:meth:`close` waits).

        A native install's partial tree holds what it installed: removing it
        took a third of a second of the step.
        """
        t = threading.Thread(target=shutil.rmtree, args=(root,), kwargs={"ignore_errors": True})
        t.start()
        self._removing.append(t)

    def rootfs(self, state: StageState) -> Path:
        """The stage's rootfs with every layer so far: made (and brought up to date) here.

        What it did is noted in ``BuildResult.rootfs_work`` (a rebuild that
        only changed the last COPY should have nothing there).
        """
        path = state.rootfs
        if not state.made:
            state.directory.mkdir(parents=True, exist_ok=True)
            if state.image is None:
                path.mkdir()
            else:
                digest = state.image.descriptor.digest
                if not (cached_path(digest) / COMPLETE).exists():
                    self.note(f"{self.platform}: base {digest} unpacked (kept for later builds)")
                self.note(f"{self.platform}: rootfs of stage {state.directory.name} made")
                lower = unpacked(self.store, digest, state.image.manifest)
                view = View(lower, state.directory)
                self.views.append(view)
                _prepare_upper(lower, state.directory / "upper")
                view.mount()
            state.made = True
            state.applied = state.base_layers
        pending = state.layers[state.applied :]
        if pending:
            self.note(f"{self.platform}: {len(pending)} layer(s) applied to the rootfs")
            blobs = [(str(d.digest), self.store.blob_path(d.digest), d.media_type) for d in pending]
            unpack(path, blobs)
            state.applied = len(state.layers)
        return path

    def lookup(self, state: StageState, path: str) -> PathMeta | None:
        """What ``path`` (relative) is in the stage's image so far, without its rootfs.

        Read from the layers' headers (each layer's read once per process):
        nothing is unpacked.
        """
        if state.made:
            raise NeedRootfs()
        for desc in reversed(state.layers):
            idx = self.index(desc)
            if path in idx.entries:
                meta = idx.entries[path]
                if meta.xattrs:
                    raise NeedRootfs()  # kept simple: the layer writer does not carry xattrs
                return meta
            above = [path, *ancestors(path)]
            if any(a in idx.hidden for a in above) or any(a in idx.opaque for a in above[1:]):
                return None
        return None

    def copy_targets(
        self, state: StageState, targets: list[str], sources: Sequence[tuple[Path, str]]
    ) -> list[str]:
        """A COPY's targets, one file into a directory the image has (``COPY req.txt /app``).

        The file lands inside that directory: the sparse tree needs it as a parent,
        not as the target (which exists). Anything else is left as it is.
        """
        if len(targets) != 1 or len(sources) != 1 or targets[0].endswith("/"):
            return targets
        src, rel = sources[0]
        if src.is_symlink() or not src.is_file() or not self._is_dir(state, targets[0]):
            return targets
        return [f"{targets[0]}/{Path(rel).name if rel not in ('', '.') else src.name}"]

    def _is_dir(self, state: StageState, path: str) -> bool:
        """Whether the image has a directory at ``path`` (False where that takes a rootfs)."""
        try:
            meta = self.lookup(state, image_path(path))
        except NeedRootfs:
            return False
        return meta is not None and meta.kind == "dir"

    def merge_target(
        self,
        state: StageState,
        targets: list[str],
        sources: Sequence[tuple[Path, str]],
        step: df.CopyStep,
        ignore: df.DockerIgnore | None,
    ) -> str | None:
        """The target of one directory's contents copied into a directory the image has
        (``COPY . /app`` after ``WORKDIR /app``), for a sparse tree that holds that directory:
        else None. A ``.dockerignore`` with ``!`` lines or ``--exclude`` keeps the rootfs
        (a directory entered only to look for re-included paths is removed when the step
        made it, kept when it was there)."""
        if len(targets) != 1 or len(sources) != 1 or step.excludes or step.parents:
            return None
        if ignore is not None and ignore.has_exclusions:
            return None
        src, _ = sources[0]
        if src.is_symlink() or not src.is_dir() or not self._is_dir(state, targets[0]):
            return None
        return targets[0]

    def check_merged(self, state: StageState, root: Path, into: str | None) -> None:
        """:class:`NeedRootfs` unless every path a COPY wrote under ``into`` in a sparse tree
        is new to the image or replaces one of its own kind (a file a file, a directory a
        directory, a link a link): the layer is then the one the rootfs gives, where the
        COPY replaces files whole and gives directories its own modes, owners and times."""
        if into is None:
            return
        top = image_path(into)
        for dirpath, dirnames, filenames in os.walk(root / top):
            base = Path(dirpath).relative_to(root).as_posix()
            for name in [*dirnames, *filenames]:
                p = Path(dirpath, name)
                meta = self.lookup(state, f"{base}/{name}")
                if meta is None:
                    continue
                kind = "symlink" if p.is_symlink() else "dir" if p.is_dir() else "other"
                if kind != meta.kind:
                    raise NeedRootfs()

    def partial_root(self, state: StageState, patterns: Sequence[str]) -> Path:
        """A new tree of only the image's paths matching ``patterns`` (and their parents).

        For a step that reads and writes few known places (a Python install):
        no base unpacked, and the step's layer is the diff of this tree. The
        caller removes it.
        """
        self._sparse += 1
        root = self.dir / f"partial{self._sparse}"
        root.mkdir()
        keep = pattern_filter(patterns)
        layers: list[LayerSource] = []
        spans: list[list[tuple[int, int]] | None] = []
        for d in state.layers:
            # the members kept, found in the layer's index (WORKDIR and COPY read it already)
            kept = kept_spans(self.index(d), keep)
            got = self._grabbed.get(str(d.digest), {})
            if kept is not None and all(start in got for start, _ in kept):
                # all of them kept from the scan: the blob is not read again
                tar = io.BytesIO(b"".join(got[start] for start, _ in kept) + bytes(2 * 512))
                layers.append((str(d.digest), tar, TAR_STREAM))
                spans.append(None)
            else:
                layers.append((str(d.digest), self.store.blob_path(d.digest), d.media_type))
                spans.append(kept)
        unpack(root, layers, only=keep, spans=spans)
        return root

    @contextmanager
    def sparse_root(
        self, state: StageState, targets: Sequence[str], into: str | None = None
    ) -> Iterator[Path]:
        """A tree of only the existing directories on the way to ``targets`` (which must not
        exist) or to ``into`` (the image's directory a COPY merges into, made too).

        Raises :class:`NeedRootfs` when that is not enough to write the step
        exactly (a target exists, a symlink or a file on the way, ``..``).
        """
        dirs: dict[str, PathMeta] = {}
        for t in targets:
            rel = image_path(t)
            meta = self.lookup(state, rel)
            if meta is not None and not (t == into and meta.kind == "dir"):
                raise NeedRootfs()
            for a in [*ancestors(rel), *([rel] if t == into else [])]:
                if a in dirs:
                    continue
                meta = self.lookup(state, a)
                if meta is None:
                    break
                if meta.kind != "dir":
                    raise NeedRootfs()
                dirs[a] = meta
        self._sparse += 1
        root = self.dir / f"sparse{self._sparse}"
        root.mkdir()
        try:
            for a in sorted(dirs):
                d = root / a
                d.mkdir()
                os.lchown(d, dirs[a].uid, dirs[a].gid)
                os.chmod(d, dirs[a].mode)
            # deepest first: a child's mkdir touches its parent
            for a in sorted(dirs, reverse=True):
                ns = dirs[a].mtime * 10**9
                os.utime(root / a, ns=(ns, ns), follow_symlinks=False)
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)


class PartialTrees:
    """The partial trees an interceptor opens during one step (``StepContext.open_partial``).

    Each is snapshotted when made (its diff is the step's layer) and removed (in the background)
    when the step is over, whatever happened.
    """

    def __init__(self, trees: StageTrees, state: StageState) -> None:
        self.trees = trees
        self.state = state
        self.made: list[tuple[Path, Snapshot]] = []

    def open(self, patterns: Sequence[str]) -> Path:
        """A new partial tree (see :meth:`StageTrees.partial_root`)."""
        root = self.trees.partial_root(self.state, patterns)
        self.made.append((root, Snapshot.take(root)))
        return root

    @property
    def last(self) -> tuple[Path, Snapshot] | None:
        """The last tree opened and its snapshot from before the step."""
        return self.made[-1] if self.made else None

    def __enter__(self) -> PartialTrees:
        return self

    def __exit__(self, *exc: object) -> None:
        for root, _ in self.made:
            self.trees.discard(root)


def pattern_filter(patterns: Sequence[str]) -> Callable[[tuple[str, ...]], bool]:
    """A filter for :func:`manyarch.layers.unpack`: paths matching ``patterns``, and their parents.

    A pattern is an image path whose components are :mod:`fnmatch` patterns;
    a last component ``**`` keeps the whole subtree. Whatever stands where a
    pattern's parent directories are (a directory, a symlink such as a
    merged-/usr ``/lib``) is kept too. Compiled into one regular expression:
    it is asked for every entry of every layer.
    """
    import fnmatch
    import re

    alternatives = []
    for pat in patterns:
        parts = [p for p in pat.split("/") if p]
        deep = bool(parts) and parts[-1] == "**"
        fixed = parts[:-1] if deep else parts
        comps = [fnmatch.translate(p).removeprefix("(?s:").removesuffix(")\\Z") for p in fixed]
        comps = [f"(?:{c.replace('.*', '[^/]*')})" for c in comps]
        # the path itself or one of its parents: nested optional groups
        body = ""
        for c in reversed(comps[1:]):
            body = f"(?:/{c}{body})?"
        tail = "(?:/.*)?" if deep else ""
        if comps:
            alternatives.append(f"{comps[0]}{body}")
            if deep:
                alternatives.append("/".join(comps) + tail)
    regex = re.compile("(?:" + "|".join(alternatives) + ")\\Z", re.S) if alternatives else None

    def keep(parts: tuple[str, ...]) -> bool:
        return regex is not None and regex.match("/".join(parts)) is not None

    return keep


def _prepare_upper(lower: Path, upper: Path) -> None:
    """The overlay's upper directory: the root's metadata, and the cache marker hidden."""
    upper.mkdir(parents=True, exist_ok=True)
    st = lower.lstat()
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    if os.geteuid() == 0:
        os.lchown(upper, st.st_uid, st.st_gid)
        # a whiteout: the tree's completion marker is not part of the image
        os.mknod(upper / COMPLETE, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.utime(upper, ns=(st.st_mtime_ns, st.st_mtime_ns))
