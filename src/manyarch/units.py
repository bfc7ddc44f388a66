"""Sizes, durations and times as docker prints and reads them (go-units, RFC 3339)."""

from __future__ import annotations

import datetime
import re
import time


def human_size(n: int) -> str:
    """docker's sizes (go-units HumanSize): 1000-based, three significant digits."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}TB"


def human_duration(seconds: float) -> str:
    """docker's durations (go-units HumanDuration): ``About a minute``, ``2 weeks``."""
    s, minutes, hours = int(seconds), int(seconds // 60), int(seconds / 3600 + 0.5)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def rfc3339(epoch: int) -> str:
    """Seconds since the epoch as the RFC 3339 time the OCI spec wants in ``created``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_rfc3339(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time of any precision (images often carry nanoseconds); None if unreadable."""
    if not text:
        return None
    t = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # fromisoformat takes at most 6 digits of fraction
    head, dot, rest = t.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        t = head + ("." + rest[: min(digits, 6)] if digits else "") + rest[digits:]
    try:
        when = datetime.datetime.fromisoformat(t)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def epoch_of(text: str | None) -> int:
    """Seconds since the epoch of an RFC 3339 time (0 when absent, unreadable or before 1970)."""
    when = parse_rfc3339(text)
    return max(0, int(when.timestamp())) if when is not None else 0


_BINARY = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """docker's memory sizes (go-units RAMInBytes): ``64m``, ``1g``, ``512kb``, ``100``.

    Raises ValueError for anything else.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtpb]?)b?\s*", text.lower())
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    return int(float(m.group(1)) * _BINARY[m.group(2)])


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds: ``30s``, ``1m30s``, ``500ms``, ``0``.

    Raises ValueError for anything else.
    """
    t = text.strip()
    if t in ("0", "+0", "-0"):
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", t)
    if not parts or "".join(n + u for n, u in parts) != t.lstrip("+"):
        raise ValueError(f"invalid duration: {text!r}")
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def parse_timestamp(text: str, now: float | None = None) -> float:
    """docker's ``--since``/``--until``: RFC 3339, Unix seconds, or a Go duration before now."""
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    when = parse_rfc3339(t)
    if when is None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        when = parse_rfc3339(t + "T00:00:00Z")
    if when is not None:
        return when.timestamp()
    return (time.time() if now is None else now) - parse_go_duration(t)
