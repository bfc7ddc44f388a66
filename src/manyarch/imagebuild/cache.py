"""The build cache: a step's layer found again by what made it, instead of run again.

A key is sha256 over what a RUN or COPY step's result depends on: the layers
below it (their digests: layers are deterministic, so they name the parent
chain), the image config it runs with (env, user, workdir, shell), the
instruction and its expanded arguments, the target platform, the layer
options (epoch, native pip or not) and, for COPY, the digests of
the context files it selects (after ``.dockerignore``). An entry maps the key
to the layer's descriptor and diff_id; the blob itself lives in the local
store. On a hit the layer is used as is; the executor unpacks it only when a
later step needs the stage's files (a rebuild where every step up to the last
COPY hits unpacks nothing).

Entries are small JSON files under ``$XDG_CACHE_HOME/manyarch/buildcache``;
their mtime is their last use, for :func:`prune` (LRU, bounded by the size of
the layers they name). An export (buildx's ``type=local,dest=DIR``) writes
the entries and blobs this build used to DIR as an OCI layout plus
``entries/``; an import (``type=local,src=DIR``) looks there when the local
cache misses. ``type=registry,ref=REF`` does the same through a registry
(:mod:`registrycache`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch import dockerfile as df
from manyarch.errors import InvalidArgument, ManyarchError
from manyarch.imagebuild import ghacache, registrycache
from manyarch.imagebuild.copying import expand_sources, read_dockerignore
from manyarch.imagebuild.options import CachedLayer, StepContext
from manyarch.images import LayoutSink, Source, copy_blobs
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Descriptor
from manyarch.units import rfc3339

if TYPE_CHECKING:
    from manyarch.registry import RegistryClient

#: Bump when the key's recipe changes: old entries then simply miss.
#: 2: layers are always written with OCI media types (the Docker form is made at publish).
KEY_VERSION = 2
#: Default bound of the local cache (sum of the layer sizes its entries name).
DEFAULT_MAX_BYTES = 10 * 1024**3


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/manyarch`` (``~/.cache/manyarch`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "manyarch"


def buildcache_dir() -> Path:
    """Where the local build cache's entries live."""
    return cache_home() / "buildcache"


@dataclass(frozen=True)
class CacheEntry:
    """What a key found: the step's layer (None when the step changed no file)."""

    key: str
    layer: Descriptor | None
    diff_id: str | None
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        """The entry file's content."""
        return {
            "key": self.key,
            "layer": self.layer.to_json() if self.layer else None,
            "diff_id": self.diff_id,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CacheEntry:
        """Read an entry file."""
        layer = data.get("layer")
        return cls(
            key=str(data["key"]),
            layer=Descriptor.from_json(layer) if layer else None,
            diff_id=data.get("diff_id"),
            text=str(data.get("text", "")),
        )


@dataclass(frozen=True)
class CacheSpec:
    """Where a build cache is exported to or imported from, as buildx writes it:
    ``type=local,dest=DIR`` / ``src=DIR``, ``type=registry,ref=REF`` (a manyarch
    cache, or an image with an inline cache), ``type=inline`` (an export into the
    image's configs) or ``type=gha`` (GitHub Actions' cache service, see
    :mod:`manyarch.imagebuild.ghacache`); ``mode=max`` and ``mode=min`` both
    export every entry the build used."""

    type: str
    path: Path | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    ref: str | None = None

    @classmethod
    def parse(cls, text: str, *, export: bool, env: Mapping[str, str] | None = None) -> CacheSpec:
        """Parse buildx's spelling (a bare path means ``type=local``); ``export``: a destination.

        ``type=gha`` takes its url and token from the environment as buildx
        does (``ACTIONS_CACHE_URL`` or ``ACTIONS_RESULTS_URL``,
        ``ACTIONS_RUNTIME_TOKEN``); buildx drops the entry silently when they
        are missing, manyarch refuses it.
        """
        if "=" not in text:
            return cls("local", Path(text))
        attrs = dict(kv.split("=", 1) for kv in text.split(",") if "=" in kv)
        kind = attrs.get("type", "local")
        if kind == "registry":
            if not attrs.get("ref"):
                raise InvalidArgument(
                    f"cache {text!r}: type=registry needs ref=REGISTRY/REPOSITORY:TAG"
                )
            return cls(kind, None, attrs, attrs["ref"])
        if kind == "inline":
            if not export:
                raise InvalidArgument(
                    "--cache-from type=inline: an inline cache is read from the image",
                    "use --cache-from type=registry,ref=IMAGE",
                )
            return cls(kind, None, attrs)
        if kind == "gha":
            from manyarch.imagebuild.ghacache import gha_attrs

            return cls(kind, None, gha_attrs(attrs, os.environ if env is None else env))
        if kind != "local":
            raise InvalidArgument(
                f"cache type {kind!r} is not supported",
                "use type=local,dest=DIR / src=DIR, type=registry,ref=REF, type=inline or type=gha",
            )
        key = "dest" if export else "src"
        if key not in attrs:
            raise InvalidArgument(f"cache {text!r}: type=local needs {key}=DIR")
        return cls(kind, Path(attrs[key]), attrs)


def _entry_path(root: Path, key: str) -> Path:
    return root / "entries" / key[:2] / f"{key}.json"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def step_key(ctx: StepContext, extra: Mapping[str, Any] | None = None) -> str | None:
    """The cache key of a RUN or COPY step, or None when it is not cacheable."""
    step = ctx.step
    o = ctx.options
    recipe: dict[str, Any] = {
        "v": KEY_VERSION,
        "platform": str(ctx.platform),
        "parent": [str(d.digest) for d in ctx.layers],
        "config": ctx.config.config.to_json(),
        "epoch": o.epoch,
        "text": step.text,
        **(extra or {}),
    }
    if isinstance(step, df.RunStep):
        if any(m.type == "bind" for m in step.mounts):
            return None  # the files a bind mount shows are not tracked here
        spec = ctx.sandbox
        recipe["run"] = {
            "argv": list(step.argv),
            "files": [list(f) for f in step.files],
            "env": sorted(step.env),
            "network": spec.network if spec else step.network,
            "user": spec.user if spec else "",
            "cwd": spec.cwd if spec else "/",
        }
    else:
        if step.from_ is not None:
            return None  # another stage's or image's files: not tracked here
        if any(df.values.is_remote(s) for s in step.sources) and step.checksum is None:
            return None  # what a URL serves may change: fetched each build unless pinned
        context = o.context.resolve()
        recipe["copy"] = {
            "sources": list(step.sources),
            "dest": step.dest,
            "chown": step.chown,
            "chmod": step.chmod,
            "add": step.is_add,
            "extract": step.extract_tar,
            "inline": [list(f) for f in step.inline],
            "checksum": step.checksum,
            "files": context_digest(context, step),
        }
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def context_digest(context: Path, step: df.CopyStep) -> str:
    """sha256 over the context files a COPY selects: names, modes, contents, link targets."""
    ignore = read_dockerignore(context)
    h = hashlib.sha256()
    for src, rel in expand_sources(context, step, ignore):
        for path, name in _walk(src, rel, ignore):
            st = path.lstat()
            # fsencode: a name that is not UTF-8 hashes as its own bytes
            h.update(os.fsencode(name) + f"\0{st.st_mode:o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                h.update(_file_sha(path, st).encode())
            h.update(b"\n")
    return h.hexdigest()


_sha_memo: dict[tuple[str, int, int, int], str] = {}


def _file_sha(path: Path, st: os.stat_result) -> str:
    memo = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if memo in _sha_memo:
        return _sha_memo[memo]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    _sha_memo[memo] = h.hexdigest()
    return _sha_memo[memo]


def _walk(src: Path, rel: str, ignore: df.DockerIgnore | None) -> Iterator[tuple[Path, str]]:
    yield src, rel
    if src.is_dir() and not src.is_symlink():
        for entry in sorted(src.iterdir()):
            name = entry.name if rel in ("", ".") else f"{rel}/{entry.name}"
            if ignore is not None and ignore.matches(name):
                continue
            yield from _walk(entry, name, ignore)


class BuildCache:
    """The local cache (plus optional import and export directories) for one build.

    The cache is an OCI layout of its own (``blobs/``) plus ``entries/``, so
    the store's garbage collector never takes a cached layer away, and an
    export directory has the same shape as the local cache.
    """

    def __init__(
        self,
        store: Layout,
        root: Path | None = None,
        *,
        read: bool = True,
        imports: Sequence[Path] = (),
        export: Path | None = None,
        salt: str = "",
    ) -> None:
        self.store = store
        self.root = root or buildcache_dir()
        self.layout = Layout.open(self.root, create=True)
        self.read = read
        self.imports = list(imports)
        #: where an import directory's blobs come from when it holds none (a registry cache)
        self.remote: dict[Path, Source] = {}
        self.export = export
        self.salt = salt
        self.used: dict[str, CacheEntry] = {}
        #: what the inline cache names: see :mod:`manyarch.imagebuild.inlinecache`
        self.chains: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` with its layer put in the store, else None."""
        for src in [self.root, *self.imports]:
            path = _entry_path(src, key)
            entry = _read_entry(path)
            if entry is None or entry.layer is None:
                continue
            blob = src / "blobs" / entry.layer.digest.algorithm / entry.layer.digest.hex
            if not self.store.has_blob(entry.layer.digest):
                if blob.exists():
                    _link_or_copy(blob, self.store, entry.layer.digest)
                elif src in self.remote:
                    try:
                        copy_blobs(self.remote[src], LayoutSink(self.store), [entry.layer], jobs=1)
                    except ManyarchError:
                        continue  # a cache that cannot answer is a miss, not a failure
                else:
                    continue
            if src == self.root:
                os.utime(path)
            else:
                self._keep(entry, self.store.blob_path(entry.layer.digest))
            return entry
        return None

    def _keep(self, entry: CacheEntry, blob: Path) -> None:
        assert entry.layer is not None
        if not self.layout.has_blob(entry.layer.digest):
            _link_or_copy(blob, self.layout, entry.layer.digest)
        _write_json(_entry_path(self.root, entry.key), entry.to_json())

    def write_export(self) -> None:
        """Write the entries this build used, and their blobs, to the export directory."""
        if self.export is None:
            return
        dest = Layout.open(self.export, create=True)
        for entry in self.used.values():
            if entry.layer is None:
                continue
            if not dest.has_blob(entry.layer.digest):
                _link_or_copy(self.store.blob_path(entry.layer.digest), dest, entry.layer.digest)
            _write_json(_entry_path(self.export, entry.key), entry.to_json())

    # -- the executor's hooks ---------------------------------------------------

    def interceptor(self, ctx: StepContext) -> CachedLayer | None:
        """Before a step: the cached layer when the key is known (the executor applies it).

        Not for a stage ``--no-cache-filter`` names (by name or index), as BuildKit.
        """
        skip = {s.lower() for s in ctx.options.no_cache_filter}
        if not self.read or skip.intersection(s.lower() for s in ctx.stage):
            return None
        key = self.key(ctx)
        if key is None:
            return None
        entry = self.get(key)
        if entry is None or entry.layer is None or entry.diff_id is None:
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
            self.used[key] = entry
            self._chain(ctx, key, entry.layer)
        return CachedLayer(entry.layer, Digest.parse(entry.diff_id))

    def record(self, ctx: StepContext, layer: Descriptor | None, diff_id: Digest | None) -> None:
        """After a step ran: remember its layer under its key (a step with no layer is not)."""
        if layer is None or diff_id is None:
            return
        key = self.key(ctx)
        if key is None:
            return
        entry = CacheEntry(key, layer, str(diff_id), ctx.step.text)
        self._keep(entry, self.store.blob_path(layer.digest))
        with self._lock:
            self.used[key] = entry
            self._chain(ctx, key, layer)

    def _chain(self, ctx: StepContext, key: str, layer: Descriptor) -> None:
        chain = (*(str(d.digest) for d in ctx.layers), str(layer.digest))
        self.chains[(str(ctx.platform), chain)] = (key, rfc3339(ctx.options.epoch or 0))

    def key(self, ctx: StepContext) -> str | None:
        """The step's key (None: not cacheable)."""
        return step_key(ctx, {"salt": self.salt} if self.salt else None)


def _link_or_copy(blob: Path, layout: Layout, digest: Digest) -> None:
    dest = layout.blob_path(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, dest)
    except FileExistsError:
        pass
    except OSError:
        layout.put_file(blob, digest)


def _read_entry(path: Path) -> CacheEntry | None:
    try:
        return CacheEntry.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- pruning -----------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` removed and what is left."""

    removed: int
    freed: int
    kept: int
    size: int


def entries(root: Path | None = None) -> list[tuple[Path, CacheEntry, float]]:
    """Every entry of the local cache with its last use, oldest first."""
    root = root or buildcache_dir()
    out: list[tuple[Path, CacheEntry, float]] = []
    for p in (root / "entries").glob("*/*.json"):
        e = _read_entry(p)
        if e is not None:
            out.append((p, e, p.stat().st_mtime))
    out.sort(key=lambda t: (t[2], t[1].key))
    return out


def prune(
    *, keep_bytes: int | None = None, all: bool = False, root: Path | None = None
) -> PruneResult:
    """Drop least-recently-used entries until their layers fit in ``keep_bytes``.

    ``all`` drops every entry. Blobs no remaining entry names are removed.
    """
    root = root or buildcache_dir()
    limit = 0 if all else (DEFAULT_MAX_BYTES if keep_bytes is None else keep_bytes)
    items = entries(root)
    refs: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for _, e, _ in items:
        if e.layer is not None:
            d = str(e.layer.digest)
            refs[d] = refs.get(d, 0) + 1
            sizes[d] = e.layer.size
    total = sum(sizes.values())
    removed = 0
    for path, e, _ in items:
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        removed += 1
        if e.layer is not None:
            d = str(e.layer.digest)
            refs[d] -= 1
            if refs[d] == 0:
                total -= sizes[d]
    freed = 0
    blobs = root / "blobs" / "sha256"
    if blobs.is_dir():
        for b in blobs.iterdir():
            if refs.get(f"sha256:{b.name}", 0) == 0:
                freed += b.lstat().st_size
                b.unlink(missing_ok=True)
    return PruneResult(removed, freed, len(items) - removed, total)


def parse_size(text: str) -> int:
    """``10GB``, ``512MiB``, ``1e9``: a size in bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(float(t))
    except ValueError as e:
        raise InvalidArgument(f"invalid size {text!r}", "write e.g. 10GB or 512MB") from e


@dataclass
class BuildHooks:
    """The build cache and native pip for one build: interceptors, observers, and their
    lifecycle (a context manager: what a registry cache needed is removed on exit)."""

    interceptors: list[Any]
    observers: list[Any]
    cache: BuildCache | None
    #: what the build should tell (a registry cache not found yet)
    warnings: list[str] = field(default_factory=list)
    push_to: str | None = None
    #: a ``type=gha`` export's attributes
    gha_to: Mapping[str, str] | None = None
    client: RegistryClient | None = None
    temp_dirs: list[Path] = field(default_factory=list)

    def __enter__(self) -> BuildHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finish(self) -> None:
        """After a successful build: write the cache export (and push it), then clean up."""
        try:
            if self.cache is not None:
                self.cache.write_export()
                entries = [e.to_json() for e in self.cache.used.values() if e.layer]
                if self.push_to is not None and self.cache.export is not None:
                    assert self.client is not None
                    registrycache.push(self.cache.export, entries, self.push_to, self.client)
                if self.gha_to is not None and self.cache.export is not None:
                    ghacache.push(self.cache.export, entries, self.gha_to)
        finally:
            self.close()

    def close(self) -> None:
        """Remove the directories a registry cache needed (also after a failed build)."""
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.temp_dirs.clear()


def build_hooks(
    store: Layout,
    *,
    no_cache: bool = False,
    native_pip: bool = True,
    native_apt: bool = True,
    cache_to: CacheSpec | str | None = None,
    cache_from: Sequence[CacheSpec | str] = (),
    client: RegistryClient | None = None,
) -> BuildHooks:
    """The interceptors and observers for one build: the build cache, native apt and pip.

    ``cache_to`` is where the cache this build used is exported, ``cache_from``
    where else to look (buildx's spellings, or :class:`CacheSpec` s). A
    registry import is read here (its entries; blobs on a hit); a registry
    cache needs ``client``.
    """
    from manyarch.imagebuild.nativeapt.interceptor import OUTPUT_VERSION as APT_VERSION
    from manyarch.imagebuild.nativepip.interceptor import OUTPUT_VERSION
    from manyarch.imagebuild.nativeshell import native_interceptors

    export_spec = CacheSpec.parse(cache_to, export=True) if isinstance(cache_to, str) else cache_to
    specs = [CacheSpec.parse(t, export=False) if isinstance(t, str) else t for t in cache_from]
    registry = [s.ref for s in [*specs, export_spec] if s is not None and s.type == "registry"]
    if client is None and registry:
        raise InvalidArgument(f"a registry cache ({registry[0]}) needs a registry client")
    hooks = BuildHooks([], [], None, client=client)
    try:
        imports: list[Path] = []
        remote: dict[Path, Source] = {}
        for spec in specs:
            if spec.path is not None:
                imports.append(spec.path)
                continue
            d = registrycache.temp_dir()
            hooks.temp_dirs.append(d)
            found: tuple[list[dict[str, Any]], Source] | None
            if spec.type == "gha":
                found = ghacache.pull(spec.attrs)
                where = f"GitHub Actions' cache (scope {spec.attrs.get('scope', 'buildkit')})"
            else:
                assert spec.ref is not None and client is not None
                found = registrycache.pull(spec.ref, client)
                where = spec.ref
            if found is None or not found[0]:  # none yet, or an image without an inline cache
                hooks.warnings.append(f"no build cache at {where} yet: nothing imported from it")
                continue
            entries, remote[d] = found
            for entry in entries:
                _write_json(_entry_path(d, entry["key"]), entry)
            imports.append(d)
        export = export_spec.path if export_spec is not None else None
        if export_spec is not None and export_spec.type in ("registry", "gha"):
            export = registrycache.temp_dir()
            hooks.temp_dirs.append(export)
            if export_spec.type == "gha":
                hooks.gha_to = export_spec.attrs
            else:
                hooks.push_to = export_spec.ref
        cache = BuildCache(
            store,
            read=not no_cache,
            imports=imports,
            export=export,
            # a step native pip did is only reused while native pip writes the same files
            salt=(f"native-pip/{OUTPUT_VERSION}" if native_pip else "emulated")
            + (f"+native-apt/{APT_VERSION}" if native_apt else ""),
        )
    except BaseException:
        hooks.close()
        raise
    cache.remote.update(remote)
    hooks.cache = cache
    hooks.interceptors.append(cache.interceptor)
    hooks.interceptors += native_interceptors(cache_home(), apt=native_apt, pip=native_pip)
    hooks.observers.append(cache.record)
    return hooks
