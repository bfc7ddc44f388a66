"""What the wire says, read as the distribution spec means it: headers (media
types, ``Retry-After``, an upload's ``Location``), a manifest's own media type
when the registry gives none; and URLs redacted in httpx's own log lines."""

from __future__ import annotations

import json
import logging
import time
from email.utils import parsedate_to_datetime

import httpx

from manyarch.errors import InvalidDocument, RegistryError
from manyarch.oci import mediatypes as mt
from manyarch.registry.diagnostics import redact_url


class RedactURLs(logging.Filter):
    """Redacts URLs in httpx's own request log lines (upload state, signed query strings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, RedactURLs) for f in _httpx_log.filters):
    _httpx_log.addFilter(RedactURLs())


def media_type_of(header: str | None) -> str:
    """The media type of a ``Content-Type`` header, parameters dropped."""
    return (header or "").split(";", 1)[0].strip()


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def upload_location(response: httpx.Response) -> httpx.URL:
    """Where an upload goes on: the ``Location`` of the answer that opened or moved it."""
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(
            f"{response.request.method} {redact_url(response.url)}: "
            "the registry opened an upload without a Location",
            status=response.status_code,
        )
    return response.url.join(location)


def sniff_media_type(data: bytes, where: str) -> str:
    """The media type a manifest says it has, for a registry that did not say."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidDocument(f"the manifest of {where} is not JSON") from e
    if not isinstance(obj, dict):
        raise InvalidDocument(f"the manifest of {where} is not a JSON object")
    declared = obj.get("mediaType")
    if isinstance(declared, str) and (mt.is_manifest(declared) or mt.is_index(declared)):
        return declared
    return mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST
