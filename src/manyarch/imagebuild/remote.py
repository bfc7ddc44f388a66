"""``ADD <url>``: a file fetched over HTTP(S), as BuildKit's ``llb.HTTP`` source fetches it.

The file is named after the URL's last path segment (``__unnamed__`` when it
has none), mode 0600 unless ``--chmod``, its mtime the response's
``Last-Modified``; it is never unpacked. ``--checksum=sha256:<hex>`` is
verified before anything is written into the image. The host fetches it (the
host's CAs, its proxies), not the sandbox.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from manyarch.errors import BuildError
from manyarch.registry.transport import system_ssl_context

_CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_checksum(checksum: str) -> None:
    """Refuse what BuildKit refuses: only ``sha256:<64 hex>``."""
    if not _CHECKSUM.match(checksum):
        raise BuildError(
            f"invalid checksum {checksum!r}", "write --checksum=sha256:<64 hex digits>"
        )


def file_name(url: str) -> str:
    """The name the file lands under: the URL path's last segment."""
    name = posixpath.basename(urlsplit(url).path)
    return name if name not in ("", ".", "..", "/") else "__unnamed__"


def fetch(url: str, where: Path, checksum: str | None = None) -> Path:
    """Download ``url`` into ``where`` (a new directory of the build's); returns the file."""
    if checksum is not None:
        check_checksum(checksum)
    where.mkdir(parents=True, exist_ok=True)
    path = where / file_name(url)
    h = hashlib.sha256()
    try:
        with (
            httpx.Client(verify=system_ssl_context(), follow_redirects=True, timeout=60) as c,
            c.stream("GET", url) as r,
        ):
            if r.status_code != 200:
                raise BuildError(f"ADD {url}: the server answered {r.status_code}")
            with open(path, "wb") as f:
                for chunk in r.iter_bytes():
                    h.update(chunk)
                    f.write(chunk)
            modified = r.headers.get("last-modified")
    except httpx.HTTPError as e:
        raise BuildError(f"ADD {url}: {e}") from e
    if checksum is not None and f"sha256:{h.hexdigest()}" != checksum:
        raise BuildError(
            f"ADD {url}: digest mismatch: got sha256:{h.hexdigest()}, --checksum says {checksum}"
        )
    os.chmod(path, 0o600)
    if modified:
        try:
            t = int(email.utils.parsedate_to_datetime(modified).timestamp())
            os.utime(path, (t, t))
        except (TypeError, ValueError):
            pass
    return path
