"""An OCI Distribution client: ping, manifests, blobs, tags, with auth and retries.

Follows the distribution spec (``opencontainers/distribution-spec`` spec.md)
and go-containerregistry's ``remote`` package: a blob push is HEAD (skip
what exists), then a cross-repository mount when a source repository on the
same registry is known, else POST for an upload session and either one PUT
``?digest=`` (small blobs) or PATCHes with ``Content-Range`` and a closing PUT.
Downloads stream into the caller's file while hashing; a dropped connection
resumes with ``Range`` (or starts over); the bytes are verified against the
descriptor's size and digest before the call returns.

Temporary failures (connection errors, 408/429/5xx, ``TOOMANYREQUESTS`` ...)
are retried with exponential back-off and jitter, ``Retry-After`` honoured,
at most :attr:`RegistryOptions.retries` times.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx

from manyarch.errors import (
    DigestMismatch,
    InvalidDocument,
    ManyarchError,
    RegistryError,
    TransportError,
)
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest, Hasher
from manyarch.oci.document import Document
from manyarch.oci.manifest import Descriptor
from manyarch.oci.reference import Reference
from manyarch.registry import credentials
from manyarch.registry.auth import AuthState, RegistryAuth, parse_challenge, repository_scope
from manyarch.registry.diagnostics import (
    is_certificate_error,
    is_tls_protocol_error,
    redact_url,
    response_error,
    transport_error,
)
from manyarch.registry.options import DOCKER_HUB_API, RegistryOptions
from manyarch.registry.transport import RegistryTransport
from manyarch.registry.wire import (
    media_type_of,
    retry_after,
    sniff_media_type,
    upload_location,
)

log = logging.getLogger("manyarch.registry")


#: Largest manifest read (distribution refuses to store larger ones).
MAX_MANIFEST = 4 * 2**20
_MAX_PAGES = 10_000
_UPLOAD_RESTART_CODES = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})


def api_host(registry: str) -> str:
    """The host serving the API of a reference's registry (docker.io is special)."""
    return DOCKER_HUB_API if registry in ("docker.io", "index.docker.io") else registry


class RegistryClient:
    """A client for OCI registries; thread-safe, one connection pool, one auth state."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        config_dir = self.options.docker_config
        self._auth = AuthState(lambda registry: credentials.lookup(registry, config_dir))
        self._http = httpx.Client(
            transport=RegistryTransport(self.options),
            timeout=httpx.Timeout(self.options.timeout),
            headers={"User-Agent": self.options.user_agent},
            follow_redirects=False,
            # Proxies and CA bundles come from our own transport, not the environment.
            trust_env=False,
        )
        self._bases: dict[str, str] = {}
        self._pinging: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient(registries={sorted(self._bases)})"

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------

    def _sleep(self, attempt: int, retry_after: float | None = None) -> None:
        if retry_after is not None:
            delay = min(retry_after, self.options.backoff_max)
        else:
            ceiling = min(self.options.backoff * 2**attempt, self.options.backoff_max)
            delay = ceiling * (0.5 + random.random() / 2)  # jitter spreads parallel retries
        time.sleep(delay)

    def _send(
        self,
        method: str,
        url: httpx.URL | str,
        registry: str,
        *,
        ok: tuple[int, ...],
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retry: bool = True,
        authenticate: bool = True,
    ) -> httpx.Response:
        """One request with auth and bounded retries; a response with a status in ``ok``."""
        attempt = 0
        while True:
            auth = RegistryAuth(self._auth, registry, scopes, self.options.user_agent)
            request = self._http.build_request(method, url, headers=headers, content=content)
            try:
                response = self._http.send(
                    request,
                    auth=auth if authenticate else None,
                    stream=stream,
                    follow_redirects=follow_redirects,
                )
            except httpx.HTTPError as e:
                error: ManyarchError = transport_error(e, registry, url)
                hopeless = is_certificate_error(e) or is_tls_protocol_error(e)
                if retry and not hopeless and attempt < self.options.retries:
                    log.debug("%s %s: %s, retrying", method, redact_url(url), type(e).__name__)
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise error from e
            except RegistryError as e:
                # The token service failed; a 5xx there is as temporary as anywhere.
                if retry and e.temporary and attempt < self.options.retries:
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise
            log.debug("%s %s -> %d", method, redact_url(url), response.status_code)
            if response.status_code in ok:
                return response
            error = response_error(
                response,
                registry,
                secrets=self._auth.secrets(),
                sent_credentials=auth.sent_credentials,
            )
            if (
                retry
                and isinstance(error, RegistryError)
                and error.temporary
                and attempt < self.options.retries
            ):
                self._sleep(attempt, retry_after(response.headers.get("Retry-After")))
                attempt += 1
                continue
            raise error

    def _base(self, registry: str) -> str:
        with self._lock:
            base = self._bases.get(registry)
            pinging = self._pinging.setdefault(registry, threading.Lock())
        if base is not None:
            return base
        # one ping per registry, however many threads (a build's platforms) ask at once
        with pinging:
            with self._lock:
                base = self._bases.get(registry)
            if base is None:
                self.ping(registry)
                with self._lock:
                    base = self._bases[registry]
        return base

    def _url(self, ref: Reference, path: str) -> str:
        return f"{self._base(ref.registry)}/v2/{ref.repository}/{path}"

    # -- API -------------------------------------------------------------------

    def ping(self, registry: str) -> None:
        """Check that ``registry`` speaks the v2 API; learn its scheme and auth challenge."""
        host = api_host(registry)
        schemes = ("https", "http") if self.options.may_use_http(registry) else ("https",)
        last: ManyarchError | None = None
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/"
            try:
                response = self._send(
                    "GET",
                    url,
                    registry,
                    ok=(200, 401),
                    retry=scheme == schemes[-1],
                    authenticate=False,  # as docker does: the ping only learns the challenge
                )
            except TransportError as e:
                cause = e.__cause__
                # Fall back to http only when https found no TLS there, never on a bad certificate.
                if (
                    scheme == "https"
                    and len(schemes) > 1
                    and not (cause is not None and is_certificate_error(cause))
                ):
                    last = e
                    continue
                raise
            response.close()
            if response.status_code == 401:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
                if challenge is not None:
                    self._auth.remember(registry, challenge)
            with self._lock:
                self._bases[registry] = f"{scheme}://{host}"
            return
        assert last is not None
        raise last

    def get_manifest(self, ref: Reference) -> Document:
        """The manifest or index ``ref`` names (by tag or digest), exact bytes and media type."""
        url = self._url(ref, f"manifests/{ref.identifier}")
        attempt = 0
        while True:
            response = self._send(
                "GET",
                url,
                ref.registry,
                ok=(200,),
                scopes=(repository_scope(ref.repository),),
                headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)},
                stream=True,
            )
            try:
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_MANIFEST:
                        raise InvalidDocument(
                            f"the manifest of {ref} is larger than {MAX_MANIFEST // 2**20} MiB"
                        )
                break
            except httpx.HTTPError as e:
                if attempt >= self.options.retries:
                    raise transport_error(e, ref.registry, url) from e
                self._sleep(attempt)
                attempt += 1
            finally:
                response.close()
        raw = bytes(data)
        media_type = media_type_of(response.headers.get("Content-Type"))
        if not (mt.is_manifest(media_type) or mt.is_index(media_type)):
            media_type = sniff_media_type(raw, str(ref))
        doc = Document(raw, media_type)
        if ref.digest is not None and doc.digest != ref.digest:
            raise DigestMismatch(str(ref.digest), str(doc.digest), f"manifest {ref}")
        announced = response.headers.get("Docker-Content-Digest")
        same_algorithm = bool(announced) and announced.startswith(f"{doc.digest.algorithm}:")
        if same_algorithm and announced != str(doc.digest):
            raise DigestMismatch(announced, str(doc.digest), f"manifest {ref}")
        return doc

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor of the manifest ``ref`` names, or None when there is none."""
        url = self._url(ref, f"manifests/{ref.identifier}")
        response = self._send(
            "HEAD",
            url,
            ref.registry,
            ok=(200, 404),
            scopes=(repository_scope(ref.repository),),
            headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)},
        )
        if response.status_code == 404:
            return None
        media_type = media_type_of(response.headers.get("Content-Type"))
        announced = response.headers.get("Docker-Content-Digest")
        length = response.headers.get("Content-Length")
        if (
            not announced
            or not length
            or not (mt.is_manifest(media_type) or mt.is_index(media_type))
        ):
            # Some registries leave HEAD answers bare: GET tells everything.
            return Descriptor.of(self.get_manifest(ref))
        digest = Digest.parse(announced)
        if ref.digest is not None and digest != ref.digest:
            raise DigestMismatch(str(ref.digest), announced, f"manifest {ref}")
        return Descriptor(media_type, digest, int(length))

    def put_manifest(self, ref: Reference, doc: Document) -> Digest:
        """Store ``doc`` at ``ref``'s tag (or at its digest); returns the digest."""
        if ref.digest is not None and ref.digest != doc.digest:
            raise DigestMismatch(str(ref.digest), str(doc.digest), f"manifest for {ref}")
        target = ref.tag or str(doc.digest)
        response = self._send(
            "PUT",
            self._url(ref, f"manifests/{target}"),
            ref.registry,
            ok=(201, 200),
            scopes=(repository_scope(ref.repository, push=True),),
            headers={"Content-Type": doc.media_type},
            content=doc.data,
        )
        response.close()
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and announced != str(doc.digest):
            raise DigestMismatch(str(doc.digest), announced, f"manifest stored at {ref}")
        return doc.digest

    def delete_manifest(self, ref: Reference, digest: Digest) -> None:
        """Delete the manifest ``digest`` from ``ref``'s repository (its tags go with it)."""
        response = self._send(
            "DELETE",
            self._url(ref, f"manifests/{digest}"),
            ref.registry,
            ok=(202, 200),
            scopes=(f"repository:{ref.repository}:delete",),
        )
        response.close()

    def list_tags(self, ref: Reference, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``ref``'s repository, following ``Link: <...>; rel="next"`` pages."""
        url: httpx.URL | None = httpx.URL(self._url(ref, "tags/list"))
        assert url is not None
        if page_size is not None:
            url = url.copy_merge_params({"n": str(page_size)})
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None and len(seen) < _MAX_PAGES:
            seen.add(str(url))
            response = self._send(
                "GET", url, ref.registry, ok=(200,), scopes=(repository_scope(ref.repository),)
            )
            try:
                obj = json.loads(response.content)
            except (ValueError, UnicodeDecodeError):
                obj = None
            if not isinstance(obj, dict):
                raise InvalidDocument(f"the tag list of {ref.name} is not a JSON object")
            tags += [str(t) for t in obj.get("tags") or ()]
            following = response.links.get("next", {}).get("url")
            url = response.url.join(following) if following else None
            if url is not None and str(url) in seen:
                break
        return tags

    def has_blob(self, ref: Reference, digest: Digest) -> bool:
        """Whether ``ref``'s repository holds the blob ``digest``."""
        return self._has_blob(ref, digest, (repository_scope(ref.repository),))

    def _has_blob(self, ref: Reference, digest: Digest, scopes: tuple[str, ...]) -> bool:
        response = self._send(
            "HEAD", self._url(ref, f"blobs/{digest}"), ref.registry, ok=(200, 404), scopes=scopes
        )
        response.close()
        return response.status_code == 200

    def fetch_blob(self, ref: Reference, desc: Descriptor, dest: BinaryIO) -> None:
        """Stream the blob into ``dest``, verifying size and digest.

        ``dest`` must be seekable (a temporary file): a dropped connection resumes
        with ``Range`` or starts over from the position ``dest`` had. On
        :class:`DigestMismatch` the bytes written are not what was asked for; the
        caller discards ``dest`` and nothing bad is ever committed.
        """
        url = self._url(ref, f"blobs/{desc.digest}")
        scopes = (repository_scope(ref.repository),)
        start = dest.tell()
        hasher = Hasher(desc.digest.algorithm)
        attempt = 0
        while True:
            headers = {"Accept-Encoding": "identity"}
            if hasher.size:
                headers["Range"] = f"bytes={hasher.size}-"
            response = self._send(
                "GET",
                url,
                ref.registry,
                ok=(200, 206),
                scopes=scopes,
                headers=headers,
                stream=True,
                follow_redirects=True,
            )
            try:
                resumed = response.status_code == 206 and response.headers.get(
                    "Content-Range", ""
                ).startswith(f"bytes {hasher.size}-")
                if hasher.size and not resumed:
                    dest.seek(start)
                    dest.truncate()
                    hasher = Hasher(desc.digest.algorithm)
                for chunk in response.iter_raw():
                    if hasher.size + len(chunk) > desc.size:
                        raise DigestMismatch(
                            str(desc.digest),
                            f"more than {desc.size} bytes",
                            f"blob {desc.digest} of {ref.name}",
                        )
                    hasher.update(chunk)
                    dest.write(chunk)
            except httpx.HTTPError as e:
                if attempt >= self.options.retries:
                    raise transport_error(e, ref.registry, url) from e
                log.debug("blob %s: %s after %d bytes, resuming", desc.digest, e, hasher.size)
                self._sleep(attempt)
                attempt += 1
                continue
            finally:
                response.close()
            break
        actual = hasher.digest()
        if hasher.size != desc.size or actual != desc.digest:
            raise DigestMismatch(
                f"{desc.digest} ({desc.size} bytes)",
                f"{actual} ({hasher.size} bytes)",
                f"blob {desc.digest} of {ref.name}",
            )

    def download_blob(self, ref: Reference, desc: Descriptor, path: Path) -> None:
        """Fetch a blob to ``path`` atomically: a temporary file renamed only once verified."""
        fd, tmp = tempfile.mkstemp(prefix=f".{desc.digest.hex[:12]}-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as sink:
                self.fetch_blob(ref, desc, sink)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def open_blob_bytes(self, ref: Reference, desc: Descriptor) -> bytes:
        """A small blob (a config) in memory, verified."""
        sink = io.BytesIO()
        self.fetch_blob(ref, desc, sink)
        return sink.getvalue()

    def push_blob(
        self,
        ref: Reference,
        desc: Descriptor,
        opener: Callable[[], BinaryIO],
        *,
        mount_from: Reference | None = None,
    ) -> bool:
        """Upload a blob unless the repository has it; False when it existed or was mounted.

        ``opener`` opens the bytes afresh (an upload may restart). ``mount_from``
        names another repository on the same registry that holds the blob.
        """
        scopes: tuple[str, ...] = (repository_scope(ref.repository, push=True),)
        mountable = (
            mount_from is not None
            and mount_from.registry == ref.registry
            and mount_from.repository != ref.repository
        )
        if mount_from is not None and mountable:
            scopes += (repository_scope(mount_from.repository),)
        if self._has_blob(ref, desc.digest, scopes):
            return False
        uploads = self._url(ref, "blobs/uploads/")
        attempt = 0
        while True:
            try:
                if mount_from is not None and mountable:
                    params = {"mount": str(desc.digest), "from": mount_from.repository}
                    url = str(httpx.URL(uploads).copy_merge_params(params))
                    response = self._send("POST", url, ref.registry, ok=(201, 202), scopes=scopes)
                    response.close()
                    if response.status_code == 201:
                        return False
                    # 202: the registry refused the mount and opened an upload instead.
                else:
                    response = self._send("POST", uploads, ref.registry, ok=(202,), scopes=scopes)
                    response.close()
                self._upload(ref, desc, opener, upload_location(response), scopes)
                return True
            except (RegistryError, TransportError) as e:
                restart = e.temporary or bool(_UPLOAD_RESTART_CODES & set(e.codes))
                if not restart or attempt >= self.options.retries:
                    raise
                log.debug("upload of %s failed (%s), starting over", desc.digest, e.message)
                self._sleep(attempt)
                attempt += 1

    def _upload(
        self,
        ref: Reference,
        desc: Descriptor,
        opener: Callable[[], BinaryIO],
        location: httpx.URL,
        scopes: tuple[str, ...],
    ) -> None:
        what = f"blob {desc.digest} for {ref.name}"
        with opener() as source:
            if desc.size <= self.options.monolithic_max:
                data = source.read(desc.size + 1)
                if len(data) != desc.size:
                    raise DigestMismatch(f"{desc.size} bytes", f"{len(data)}+ bytes", what)
                body = data
            else:
                offset = 0
                while offset < desc.size:
                    chunk = source.read(min(self.options.chunk_size, desc.size - offset))
                    if not chunk:
                        raise DigestMismatch(f"{desc.size} bytes", f"{offset} bytes", what)
                    response = self._send(
                        "PATCH",
                        location,
                        ref.registry,
                        ok=(202,),
                        scopes=scopes,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                        },
                        content=chunk,
                        retry=False,  # a half-applied PATCH cannot be replayed: restart instead
                    )
                    response.close()
                    location = upload_location(response)
                    offset += len(chunk)
                if source.read(1):
                    raise DigestMismatch(f"{desc.size} bytes", f"more than {desc.size} bytes", what)
                body = b""
        response = self._send(
            "PUT",
            location.copy_merge_params({"digest": str(desc.digest)}),
            ref.registry,
            ok=(201,),
            scopes=scopes,
            headers={"Content-Type": "application/octet-stream"},
            content=body,
            retry=False,
        )
        response.close()


__all__ = ["MAX_MANIFEST", "RegistryClient", "api_host"]
