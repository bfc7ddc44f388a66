"""``--cache-to/--cache-from type=gha``: the build cache in GitHub Actions' cache service.

Inside a GitHub Actions job the runner gives ``ACTIONS_RUNTIME_TOKEN`` and
``ACTIONS_RESULTS_URL`` (``ACTIONS_CACHE_URL`` for the retired v1 service);
buildx fills ``token``, ``url`` and ``url_v2`` from them (``addGithubToken``),
and silently drops a gha cache when they are missing. manyarch refuses it
instead, saying what is missing (a build outside Actions, or a step that did
not expose the runtime variables, e.g. without ``crazy-max/ghaction-github-runtime``).

manyarch speaks the v2 service (twirp ``github.actions.results.api.v1.CacheService``:
``CreateCacheEntry`` gives a signed URL to upload to, ``FinalizeCacheEntryUpload``
commits it, ``GetCacheEntryDownloadURL`` finds an entry by key or key prefix).
Each layer blob is one cache entry (``manyarch-blob-<sha256>``); the entries
of a build are one more (``manyarch-index-<scope>-<digest>``), found again by
the newest with that prefix. As with ``type=registry``, it is manyarch's own
format: buildx does not read it, nor manyarch buildx's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from manyarch.errors import InvalidArgument, InvalidDocument, RegistryError
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import Descriptor
from manyarch.store import work_dir

SERVICE = "twirp/github.actions.results.api.v1.CacheService/"
#: the version every entry is written and read with (a 64-hex string, as the service wants)
VERSION = hashlib.sha256(b"manyarch-gha-cache-1").hexdigest()
_PUT_LIMIT = 256 << 20
_TRUE = ("1", "t", "T", "TRUE", "true", "True")


def gha_attrs(attrs: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """The attributes of a ``type=gha`` cache, completed from the environment as buildx does;
    refused (with what is missing) when there is no token or no URL."""
    out = dict(attrs)
    if "token" not in out and env.get("ACTIONS_RUNTIME_TOKEN"):
        out["token"] = env["ACTIONS_RUNTIME_TOKEN"]
    if "url" not in out:
        url = env.get("ACTIONS_CACHE_URL") or env.get("ACTIONS_RESULTS_URL")
        if url:
            out["url"] = url
    v2 = out.get("version") == "2" or env.get("ACTIONS_CACHE_SERVICE_V2", "") in _TRUE
    if "url_v2" not in out and v2 and env.get("ACTIONS_RESULTS_URL"):
        out["url_v2"] = env["ACTIONS_RESULTS_URL"]
    missing = [n for n, k in (("ACTIONS_RUNTIME_TOKEN", "token"), ("ACTIONS_RESULTS_URL", "url"))
               if not out.get(k)]  # fmt: skip
    if missing:
        raise InvalidArgument(
            f"--cache-to/--cache-from type=gha: {' and '.join(missing)} not set "
            "(buildx would drop this cache without a word)",
            "type=gha works inside a GitHub Actions job whose step sees the runtime "
            "variables (e.g. after crazy-max/ghaction-github-runtime); elsewhere use "
            "type=registry,ref=REF or type=local",
        )
    url = out.get("url_v2", "")
    if not url and out.get("version") != "1" and "results-receiver." in out["url"]:
        url = out["url"]
    if not url and (out.get("version") == "1" or "ACTIONS_CACHE_URL" in env):
        raise InvalidArgument(
            "type=gha: GitHub's v1 cache service (ACTIONS_CACHE_URL) is retired; "
            "manyarch speaks the v2 one",
            "set ACTIONS_CACHE_SERVICE_V2=true with ACTIONS_RESULTS_URL, or version=2",
        )
    out["service"] = url or out["url"]
    out.setdefault("scope", "buildkit")
    return out


class GhaCache:
    """A client of the cache service, for one scope."""

    def __init__(self, attrs: Mapping[str, str]) -> None:
        self.url = attrs["service"].rstrip("/") + "/"
        self.token = attrs["token"]
        self.scope = attrs.get("scope", "buildkit")
        self.timeout = 600.0
        self.name = f"gha:{self.scope}"

    def _call(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + SERVICE + method,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                out: dict[str, Any] = json.loads(r.read() or b"{}")
                return out
        except urllib.error.HTTPError as e:
            detail = e.read(2048).decode("utf-8", "replace")
            if e.code in (404, 409):
                return {"ok": False, "code": e.code, "msg": detail}
            raise RegistryError(
                f"GitHub Actions cache: {method} failed: HTTP {e.code} {detail[:200]}",
                status=e.code,
            ) from e
        except (urllib.error.URLError, OSError) as e:
            raise RegistryError(f"GitHub Actions cache: {method} failed: {e}") from e

    def find(self, key: str, prefix: str | None = None) -> tuple[str, str] | None:
        """``(download URL, matched key)`` of ``key``, or of the newest entry under ``prefix``."""
        body: dict[str, Any] = {"key": key, "version": VERSION}
        if prefix is not None:
            body["restore_keys"] = [prefix]
        got = self._call("GetCacheEntryDownloadURL", body)
        if not got.get("ok") or not got.get("signed_download_url"):
            return None
        return str(got["signed_download_url"]), str(got.get("matched_key", key))

    def save(self, key: str, path: Path) -> bool:
        """Upload ``path`` as entry ``key``; False when the entry exists already."""
        got = self._call("CreateCacheEntry", {"key": key, "version": VERSION})
        if not got.get("ok") or not got.get("signed_upload_url"):
            return False
        size = path.stat().st_size
        _upload(str(got["signed_upload_url"]), path, size, self.timeout)
        done = self._call(
            "FinalizeCacheEntryUpload", {"key": key, "version": VERSION, "size_bytes": size}
        )
        if not done.get("ok"):
            raise RegistryError(f"GitHub Actions cache: entry {key} was not committed")
        return True

    def fetch(self, url: str, dest: BinaryIO) -> None:
        """Download an entry into ``dest``."""
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as r:
                shutil.copyfileobj(r, dest, 1 << 20)
        except (urllib.error.URLError, OSError) as e:
            raise RegistryError(f"GitHub Actions cache: download failed: {e}") from e


def _upload(url: str, path: Path, size: int, timeout: float) -> None:
    """PUT a file to Azure Blob storage's signed URL (blocks beyond 256 MiB)."""

    def put(target: str, data: bytes, headers: Mapping[str, str]) -> None:
        req = urllib.request.Request(target, data=data, method="PUT", headers=dict(headers))
        try:
            with urllib.request.urlopen(req, timeout=timeout):
                pass
        except (urllib.error.URLError, OSError) as e:
            raise RegistryError(f"GitHub Actions cache: upload failed: {e}") from e

    sep = "&" if "?" in url else "?"
    with open(path, "rb") as f:
        if size <= _PUT_LIMIT:
            put(url, f.read(), {"x-ms-blob-type": "BlockBlob"})
            return
        ids: list[str] = []
        while chunk := f.read(64 << 20):
            block = base64.b64encode(f"{len(ids):08d}".encode()).decode()
            ids.append(block)
            put(f"{url}{sep}comp=block&blockid={urllib.parse.quote(block, safe='')}", chunk, {})
    body = "".join(f"<Latest>{b}</Latest>" for b in ids)
    xml = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{body}</BlockList>'
    put(f"{url}{sep}comp=blocklist", xml.encode(), {"Content-Type": "application/xml"})


class GhaSource:
    """The layer blobs of a gha cache, as :func:`manyarch.images.copy_blobs` reads them."""

    def __init__(self, cache: GhaCache) -> None:
        self.cache = cache
        self.name = cache.name

    def root(self) -> Document:
        """Not an image: only blobs are read from it."""
        raise InvalidDocument("a GitHub Actions cache holds no image")

    def document(self, desc: Descriptor) -> Document:
        """Not an image: only blobs are read from it."""
        raise InvalidDocument("a GitHub Actions cache holds no image")

    def fetch_blob(self, desc: Descriptor, dest: BinaryIO) -> None:
        """Download a layer blob (the store verifies it)."""
        found = self.cache.find(blob_key(desc.digest))
        if found is None:
            raise RegistryError(f"GitHub Actions cache: no blob {desc.digest}", status=404)
        self.cache.fetch(found[0], dest)


def blob_key(digest: Digest) -> str:
    """The entry key of a layer blob."""
    return f"manyarch-blob-{digest.hex}"


def index_prefix(scope: str) -> str:
    """The key prefix of a scope's entries lists (the newest is read)."""
    return f"manyarch-index-{scope}-"


def push(blobs: Path, entries: Sequence[Mapping[str, Any]], attrs: Mapping[str, str]) -> str:
    """Upload the entries (their blobs in the OCI layout ``blobs``); returns the index key."""
    cache = GhaCache(attrs)
    layout = Layout.open(blobs)
    for entry in entries:
        if entry.get("layer"):
            d = Descriptor.from_json(entry["layer"])
            if cache.find(blob_key(d.digest)) is None:
                cache.save(blob_key(d.digest), layout.blob_path(d.digest))
    data = json.dumps(
        {"entries": sorted(entries, key=lambda e: str(e["key"]))}, sort_keys=True
    ).encode()
    key = index_prefix(cache.scope) + hashlib.sha256(data).hexdigest()[:32]
    with tempfile.NamedTemporaryFile(dir=work_dir()) as tmp:
        tmp.write(data)
        tmp.flush()
        cache.save(key, Path(tmp.name))
    return key


def pull(attrs: Mapping[str, str]) -> tuple[list[dict[str, Any]], GhaSource] | None:
    """The newest entries list of the scope, and the source of its blobs; None when none."""
    cache = GhaCache(attrs)
    prefix = index_prefix(cache.scope)
    found = cache.find(prefix, prefix)
    if found is None:
        return None
    with tempfile.TemporaryFile(dir=work_dir()) as tmp:
        cache.fetch(found[0], tmp)
        tmp.seek(0)
        try:
            entries = list(json.loads(tmp.read()).get("entries", []))
        except (ValueError, AttributeError) as e:
            raise InvalidDocument(f"GitHub Actions cache {found[1]} is not manyarch's") from e
    return entries, GhaSource(cache)
