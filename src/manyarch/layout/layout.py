"""An OCI image layout directory (image-spec ``image-layout.md``): the embedded store.

::

    DIR/oci-layout              {"imageLayoutVersion": "1.0.0"}
    DIR/index.json              an image index; entries named by
                                org.opencontainers.image.ref.name are the tags
    DIR/blobs/<alg>/<hex>       content, named by its digest
    DIR/.lock                   flock held around index.json updates and gc
    DIR/.gc-lock                flock: shared by leases, exclusive during gc
    DIR/**/.tmp-*               writes in progress (or a crashed writer's)

Every file reaches its final name by rename after fsync, so a crash leaves a
layout that verifies. Blob writes need no lock (a digest names one content);
index.json read-modify-write and gc hold the exclusive lock. Blobs written
before their tag exists are unreachable for a while: hold :meth:`Layout.lease`
around "put blobs, then tag" so a concurrent gc waits instead of taking them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from manyarch.errors import (
    DigestMismatch,
    InvalidDigest,
    InvalidDocument,
    InvalidReference,
    LayoutError,
    ManyarchError,
    NotFound,
)
from manyarch.layout import _fs
from manyarch.layout.blobs import (
    BLOBS_DIR,
    CHUNK,
    BlobWriter,
    blob_path,
    chunks_of,
    hash_file,
    size_mismatch,
    unreadable,
)
from manyarch.layout.walk import children, walk
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import ALGORITHMS, Digest, Hasher
from manyarch.oci.document import Document, canonical_json
from manyarch.oci.manifest import REF_NAME, Descriptor, Index, parse_manifest_or_index

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"

# image-spec annotations.md, org.opencontainers.image.ref.name grammar.
_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


def _describe(desc: Descriptor) -> str:
    if mt.is_index(desc.media_type):
        return "index"
    if mt.is_manifest(desc.media_type):
        return "manifest"
    if mt.is_config(desc.media_type):
        return "config"
    if mt.is_layer(desc.media_type):
        return "layer"
    return "blob"


def _untagged(desc: Descriptor) -> Descriptor:
    if REF_NAME not in desc.annotations:
        return desc
    rest = {k: v for k, v in desc.annotations.items() if k != REF_NAME}
    return replace(desc, annotations=rest)


class Layout:
    """An OCI image layout directory: blobs by digest, tags in index.json."""

    path: Path

    def __init__(self, path: Path) -> None:
        """Use :meth:`open`; this does not check the directory."""
        self.path = path

    # -- opening ------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False) -> Layout:
        """Open the layout at ``path``; with ``create``, make it if it is not one yet."""
        layout = cls(Path(path).absolute())
        try:
            return layout._open(create)
        except OSError as e:
            raise layout._unreadable(e) from e

    def _unreadable(self, e: OSError) -> ManyarchError:
        return unreadable(self.path, e)

    def _open(self, create: bool) -> Layout:
        layout = self
        marker = layout.path / LAYOUT_FILE
        if not marker.exists():
            if not create:
                raise LayoutError(
                    f"{layout.path} is not an OCI image layout (no {LAYOUT_FILE} file)",
                    "check the path, or write an image there first",
                )
            layout._create()
        layout._check_marker()
        if not (layout.path / INDEX_FILE).is_file():
            raise LayoutError(
                f"{layout.path} is an incomplete OCI image layout (no {INDEX_FILE})",
                "the layout was not written completely; write the image there again",
            )
        return layout

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise LayoutError(f"{self.path} exists and is not a directory")
        ours = (_fs.LOCK_NAME, _fs.GC_LOCK_NAME, BLOBS_DIR, INDEX_FILE)
        foreign = sorted(
            p.name
            for p in (self.path.iterdir() if self.path.exists() else ())
            if p.name not in ours and not _fs.is_temp(p.name)
        )
        # Checked before the lock file exists, so a refusal leaves the directory untouched.
        if foreign:
            raise LayoutError(
                f"{self.path} is not empty and not an OCI image layout "
                f"(it holds {', '.join(foreign[:5])})",
                "choose a new or empty directory",
            )
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if (self.path / LAYOUT_FILE).exists():
                return  # another process made it meanwhile
            (self.path / BLOBS_DIR / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.path / INDEX_FILE).exists():
                self._write_index(Index())
            # Written last: its presence marks a complete layout.
            _fs.atomic_write(
                self.path / LAYOUT_FILE,
                canonical_json({"imageLayoutVersion": LAYOUT_VERSION}),
            )

    def _check_marker(self) -> None:
        marker = self.path / LAYOUT_FILE
        try:
            obj = json.loads(marker.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LayoutError(
                f"{marker} is unreadable or not JSON: {e}",
                f'it should hold {{"imageLayoutVersion": "{LAYOUT_VERSION}"}}',
            ) from e
        version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
        if not isinstance(version, str) or version.split(".")[0] != "1":
            raise LayoutError(
                f"{marker} declares unsupported imageLayoutVersion {version!r}",
                f"manyarch reads image layout version {LAYOUT_VERSION}",
            )

    def _lock(self, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        return _fs.locked(self.path / _fs.LOCK_NAME, shared=shared)

    def lease(self) -> contextlib.AbstractContextManager[None]:
        """Keep gc (in any process) away while you put blobs and then tag them.

        Leases do not exclude each other; :meth:`gc` waits until none is held,
        so do not call it from inside one.
        """
        return _fs.locked(self.path / _fs.GC_LOCK_NAME, shared=True)

    def __repr__(self) -> str:
        return f"Layout({str(self.path)!r})"

    # -- blobs --------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        """Where the blob lives (whether or not it is there)."""
        return blob_path(self.path, digest)

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is present (not checked against its digest)."""
        return self.blob_path(digest).is_file()

    def _missing(self, digest: Digest, what: str = "blob") -> NotFound:
        return NotFound(
            f"{what} {digest} is not in the layout {self.path}",
            "the layout is incomplete: copy the image into it again (verify lists what is missing)",
        )

    def open_blob(self, digest: Digest) -> BinaryIO:
        """The blob opened for reading; not verified (hash while you read if you care)."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError as e:
            raise self._missing(digest) from e
        except OSError as e:
            raise self._unreadable(e) from e

    def read_blob(self, digest: Digest) -> bytes:
        """The blob's bytes, verified against its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError as e:
            raise self._missing(digest) from e
        except OSError as e:
            raise self._unreadable(e) from e
        actual = Digest.of(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatch(
                str(digest),
                str(actual),
                f"blob {digest} in {self.path}",
                hint="the stored blob is corrupt: remove it and copy the image in again",
            )
        return data

    def put_blob(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store bytes (verified against ``expected``); returns their digest."""
        digest = Digest.of(data, expected.algorithm if expected else "sha256")
        if expected is not None and digest != expected:
            raise DigestMismatch(str(expected), str(digest), "blob")
        path = self.blob_path(digest)
        if path.is_file() and path.stat().st_size == len(data):
            return digest
        with self.writer(digest.algorithm) as w:
            w.write(data)
            w.commit(digest)
        return digest

    def put_stream(
        self,
        chunks: Iterable[bytes] | BinaryIO,
        expected: Digest | None = None,
        size: int | None = None,
    ) -> tuple[Digest, int]:
        """Store a blob from chunks or a file object, hashing as it is written.

        Verified against ``expected`` and ``size`` before it gets its name; stops
        reading as soon as the stream outgrows ``size``.
        """
        with self.writer(expected.algorithm if expected else "sha256") as w:
            for chunk in chunks_of(chunks):
                w.write(chunk)
                if size is not None and w.size > size:
                    raise size_mismatch(f"blob {expected or ''}".strip(), size, w.size)
            return w.commit(expected, size)

    def put_file(self, path: Path, digest: Digest | None = None) -> Digest:
        """Move a finished file in as a blob (verified against ``digest`` if given).

        The file is handed over: renamed when on the same filesystem, copied and
        removed otherwise. On a mismatch it is left where it was.
        """
        src = Path(path)
        algorithm = digest.algorithm if digest else "sha256"
        h = Hasher(algorithm)
        with open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
            # The caller wrote it; make its bytes durable before naming it.
            os.fsync(f.fileno())
        actual = h.digest()
        if digest is not None and actual != digest:
            raise DigestMismatch(str(digest), str(actual), f"file {src}")
        final = self.blob_path(actual)
        if final.is_file() and final.stat().st_size == h.size:
            src.unlink()
            return actual
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(src, _fs.FILE_MODE)
            os.replace(src, final)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            with open(src, "rb") as f:
                self.put_stream(f, actual, h.size)
            src.unlink()
            return actual
        _fs.fsync_dir(final.parent)
        return actual

    @contextlib.contextmanager
    def writer(
        self, algorithm: str = "sha256", *, verified_elsewhere: bool = False
    ) -> Iterator[BlobWriter]:
        """A :class:`BlobWriter`; discarded unless committed inside the block.

        With ``verified_elsewhere`` the bytes are not hashed again: only for a
        producer that checks them itself and raises before the commit.
        """
        w = BlobWriter(self.path, algorithm, verified_elsewhere=verified_elsewhere)
        try:
            yield w
        finally:
            w.discard()

    # -- documents ----------------------------------------------------------

    def put_document(self, doc: Document) -> Descriptor:
        """Store a manifest, index or config; returns its descriptor."""
        self.put_blob(doc.data, doc.digest)
        return Descriptor.of(doc)

    def read_document(self, desc: Descriptor) -> Document:
        """The verified bytes of ``desc`` with its media type."""
        data = self.read_blob(desc.digest)
        if len(data) != desc.size:
            raise size_mismatch(f"{_describe(desc)} {desc.digest}", desc.size, len(data))
        return Document(data, desc.media_type)

    # -- index.json and tags ------------------------------------------------

    def index(self) -> Index:
        """index.json, parsed."""
        path = self.path / INDEX_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise LayoutError(
                f"{self.path} is an incomplete OCI image layout (no {INDEX_FILE})",
                "the layout was not written completely; write the image there again",
            ) from e
        except OSError as e:
            raise self._unreadable(e) from e
        try:
            return Index.parse(data)
        except InvalidDocument as e:
            raise LayoutError(
                f"{path} is not a valid image index: {e.message}",
                "the file was edited or written by a broken tool; restore or rewrite it",
            ) from e

    def _write_index(self, index: Index) -> None:
        # index.json is always an OCI index, whatever a foreign tool wrote.
        index = replace(index, media_type=mt.OCI_INDEX)
        _fs.atomic_write(self.path / INDEX_FILE, canonical_json(index.to_json()))

    def _update_index(self, change: Callable[[Index], Index]) -> None:
        with self._lock():
            self._write_index(change(self.index()))

    def tag(self, name: str, desc: Descriptor) -> None:
        """Name ``desc`` (an index or manifest already stored) ``name``; replaces an old one."""
        if not _REF_NAME.match(name):
            raise InvalidReference(
                f"invalid layout tag {name!r}",
                "a tag is letters and digits joined by - . _ : @ + or /, e.g. v1.2 or latest",
            )
        if not self.has_blob(desc.digest):
            raise self._missing(desc.digest, _describe(desc))
        entry = desc.with_annotations(**{REF_NAME: name})

        def change(index: Index) -> Index:
            out: list[Descriptor] = []
            placed = False
            for d in index.manifests:
                if d.annotations.get(REF_NAME) != name:
                    out.append(d)
                elif not placed:
                    out.append(entry)
                    placed = True
            if not placed:
                out.append(entry)
            return replace(index, manifests=tuple(out))

        self._update_index(change)

    def untag(self, name: str) -> None:
        """Remove the tag (the content stays until :meth:`gc`)."""
        with self._lock():
            index = self.index()
            keep = tuple(d for d in index.manifests if d.annotations.get(REF_NAME) != name)
            if len(keep) == len(index.manifests):
                raise self._no_tag(name, index)
            self._write_index(replace(index, manifests=keep))

    def tags(self) -> list[tuple[str, Descriptor]]:
        """``(name, descriptor)`` per tag in index.json order; descriptors lack the ref.name."""
        return [
            (d.annotations[REF_NAME], _untagged(d))
            for d in self.index().manifests
            if REF_NAME in d.annotations
        ]

    def _no_tag(self, name: str, index: Index) -> NotFound:
        names = [d.annotations[REF_NAME] for d in index.manifests if REF_NAME in d.annotations]
        return NotFound(
            f"no image tagged {name!r} in the layout {self.path}",
            f"tags available: {', '.join(names)}" if names else "the layout has no tags",
        )

    def resolve(self, name_or_digest: str | None) -> Descriptor:
        """The descriptor a tag, a digest or ``None`` (the layout's only image) names.

        A digest may name an index.json entry or anything reachable from one
        (a platform manifest inside an index). The result carries no ref.name.
        """
        index = self.index()
        entries = index.manifests
        if name_or_digest is None:
            if len(entries) == 1:
                return _untagged(entries[0])
            if not entries:
                raise NotFound(
                    f"the layout {self.path} holds no image",
                    f"write one there first, e.g. manyarch copy SRC oci-layout://{self.path}:TAG",
                )
            raise NotFound(
                f"the layout {self.path} holds {len(entries)} images; name one",
                self._no_tag("", index).hint,
            )
        for d in entries:
            if d.annotations.get(REF_NAME) == name_or_digest:
                return _untagged(d)
        digest = _as_digest(name_or_digest)
        if digest is None:
            raise self._no_tag(name_or_digest, index)
        for d in entries:
            if d.digest == digest:
                return _untagged(d)
        for d in entries:
            for found in walk(self, d, missing_ok=True):
                if found.digest == digest and (
                    mt.is_index(found.media_type) or mt.is_manifest(found.media_type)
                ):
                    return found
        if self.has_blob(digest):
            doc = Document(self.read_blob(digest), "")
            try:
                parsed = parse_manifest_or_index(doc)
            except InvalidDocument as e:
                raise NotFound(
                    f"{digest} in the layout {self.path} is not an image manifest or index"
                ) from e
            return Descriptor(parsed.media_type, digest, doc.size)
        raise self._missing(digest, "image")

    # -- maintenance --------------------------------------------------------

    def _blob_files(self) -> Iterator[tuple[Path, Digest | None]]:
        """Files under blobs/ with their digest (None when the name is not one); no temps."""
        blobs = self.path / BLOBS_DIR
        if not blobs.is_dir():
            return
        for algdir in sorted(blobs.iterdir()):
            if not algdir.is_dir() or algdir.name not in ALGORITHMS:
                yield algdir, None
                continue
            for f in sorted(algdir.iterdir()):
                if _fs.is_temp(f.name):
                    continue
                try:
                    yield f, Digest(algdir.name, f.name)
                except InvalidDigest:
                    yield f, None

    def _temp_files(self) -> Iterator[Path]:
        for d in (self.path, *sorted((self.path / BLOBS_DIR).glob("*"))):
            if d.is_dir():
                yield from (p for p in sorted(d.iterdir()) if _fs.is_temp(p.name))

    def remove_stale_temps(self) -> int:
        """Remove the temp files of writers that died (a killed pull's partial blobs).

        Live blob writers hold their file's flock; the index lock keeps the
        other writers (index.json's) away meanwhile. Returns how many went.
        """
        with self._lock():
            return sum(_fs.remove_if_stale(temp) for temp in list(self._temp_files()))

    def gc(self) -> list[Digest]:
        """Remove blobs index.json cannot reach and dead writers' temp files; returns removed.

        Waits for every :meth:`lease` to end. Refuses (and removes nothing) when
        a reachable index or manifest is corrupt, since what it references
        cannot be known.
        """
        with _fs.locked(self.path / _fs.GC_LOCK_NAME), self._lock():
            reachable: set[Digest] = set()
            try:
                for entry in self.index().manifests:
                    reachable.update(d.digest for d in walk(self, entry, missing_ok=True))
            except (DigestMismatch, InvalidDocument, NotFound) as e:
                raise LayoutError(
                    f"cannot collect garbage in {self.path}: {e.message}",
                    "nothing was removed; run verify and repair the layout first",
                ) from e
            removed: list[Digest] = []
            touched: set[Path] = set()
            for path, digest in list(self._blob_files()):
                if digest is not None and digest not in reachable:
                    path.unlink(missing_ok=True)
                    removed.append(digest)
                    touched.add(path.parent)
            for temp in list(self._temp_files()):
                # Under the lock, only blob writers can be live: they hold their file's flock.
                if _fs.remove_if_stale(temp):
                    touched.add(temp.parent)
            for directory in sorted(touched):
                _fs.fsync_dir(directory)
            return removed

    def verify(self) -> list[str]:
        """Every problem found: bad files, corrupt or misnamed blobs, missing references."""
        problems: list[str] = []
        try:
            self._check_marker()
        except LayoutError as e:
            problems.append(e.message)
        present: dict[Digest, int] = {}
        corrupt: set[Digest] = set()
        for path, digest in self._blob_files():
            rel = path.relative_to(self.path)
            if digest is None:
                problems.append(f"{rel} is not named by a digest")
                continue
            try:
                actual = hash_file(path, digest.algorithm)
            except OSError as e:
                problems.append(f"{rel} is unreadable: {e.strerror}")
                continue
            if actual != digest:
                problems.append(f"{rel} is corrupt: its content has digest {actual}")
                corrupt.add(digest)
            present[digest] = path.stat().st_size
        try:
            index = self.index()
        except LayoutError as e:
            problems.append(e.message)
            return problems
        checked: set[Digest] = set()

        def check(desc: Descriptor, where: str) -> None:
            what = f"{_describe(desc)} {desc.digest}"
            if desc.digest not in present:
                # Foreign (non-distributable) layers may live only at their URLs.
                if not desc.urls:
                    problems.append(f"{what} is missing (referenced by {where})")
                return
            if desc.digest in corrupt:
                return  # reported with the blob files
            if present[desc.digest] != desc.size:
                problems.append(
                    f"{what} is {present[desc.digest]} bytes but {where} says {desc.size}"
                )
                return
            if desc.digest in checked:
                return
            checked.add(desc.digest)
            try:
                kids = children(self, desc)
            except ManyarchError as e:
                problems.append(f"{what} (referenced by {where}) is unreadable: {e.message}")
                return
            for kid in kids:
                check(kid, what)

        for entry in index.manifests:
            name = entry.annotations.get(REF_NAME)
            check(entry, f"tag {name!r}" if name else INDEX_FILE)
        return problems

    def _merge_index(self, incoming: Index) -> None:
        """Add ``incoming``'s entries: tags replace tags of the same name."""

        def change(index: Index) -> Index:
            out = list(index.manifests)
            for entry in incoming.manifests:
                name = entry.annotations.get(REF_NAME)
                if name is not None:
                    out = [d for d in out if d.annotations.get(REF_NAME) != name]
                if entry not in out:
                    out.append(entry)
            return replace(index, manifests=tuple(out))

        self._update_index(change)


def _as_digest(text: str) -> Digest | None:
    algorithm, sep, _ = text.partition(":")
    if not sep or algorithm not in ALGORITHMS:
        return None
    try:
        return Digest.parse(text)
    except InvalidDigest:
        return None
