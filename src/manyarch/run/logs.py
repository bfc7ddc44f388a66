"""A container's log, kept as docker's ``json-file`` driver keeps it.

One JSON object per line: ``{"log": "text\\n", "stream": "stdout", "time":
"2024-05-01T10:00:00.123456789Z"}``. Every container has one, foreground or
detached, so ``logs --tail/-t/--since/--until`` work for all; the supervisor
writes it while it copies the program's output to the terminal.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: docker splits longer lines into records of at most this much
MAX_RECORD = 16 * 1024


@dataclass(frozen=True)
class Record:
    """One chunk of output: when, which stream, what."""

    time: float
    stream: str  # stdout or stderr
    data: bytes

    def timestamp(self) -> str:
        """RFC 3339 with nanoseconds, as ``docker logs -t`` prints it."""
        whole = int(self.time)
        nanos = round((self.time - whole) * 1e9)
        if nanos >= 1_000_000_000:
            whole, nanos = whole + 1, nanos - 1_000_000_000
        stamp = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{nanos:09d}Z"


def encode(record: Record) -> bytes:
    """One line of the log file."""
    try:
        text = record.data.decode()
        obj = {"log": text, "stream": record.stream, "time": record.timestamp()}
    except UnicodeDecodeError:
        obj = {
            "log64": base64.b64encode(record.data).decode(),
            "stream": record.stream,
            "time": record.timestamp(),
        }
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def _parse_time(text: str) -> float:
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return base + (int((frac + "000000000")[:9]) / 1e9 if frac else 0.0)


def decode(line: bytes) -> Record | None:
    """A line of the log file (None for a torn or foreign one)."""
    try:
        obj = json.loads(line)
        data = base64.b64decode(obj["log64"]) if "log64" in obj else str(obj["log"]).encode()
        return Record(_parse_time(str(obj["time"])), str(obj.get("stream", "stdout")), data)
    except (ValueError, KeyError, TypeError):
        return None


class Writer:
    """Appends records for several streams, splitting them into lines as docker does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._lock = threading.Lock()
        self._partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        """Log ``data``; whole lines now, a line's start once it ends (or at close)."""
        now = time.time()
        with self._lock:
            buf = self._partial.pop(stream, b"") + data
            out = []
            while buf:
                nl = buf.find(b"\n")
                if nl < 0 or nl >= MAX_RECORD:
                    if len(buf) < MAX_RECORD:
                        break
                    chunk, buf = buf[:MAX_RECORD], buf[MAX_RECORD:]
                else:
                    chunk, buf = buf[: nl + 1], buf[nl + 1 :]
                out.append(encode(Record(now, stream, chunk)))
            if buf:
                self._partial[stream] = buf
            if out:
                os.write(self._fd, b"".join(out))

    def close(self) -> None:
        """Write what is left of unfinished lines, then close."""
        with self._lock:
            rest = [encode(Record(time.time(), s, d)) for s, d in self._partial.items() if d]
            self._partial.clear()
            if rest:
                os.write(self._fd, b"".join(rest))
            os.close(self._fd)


def read(path: Path) -> list[Record]:
    """Every record of the log so far."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [r for line in data.splitlines() if (r := decode(line)) is not None]


def follow(path: Path, done: object) -> Iterator[Record]:
    """Records as they come, until ``done()`` is true and the log is drained."""
    check = done if callable(done) else (lambda: True)
    offset = 0
    partial = b""
    while True:
        finished = bool(check())
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        partial += chunk
        *lines, partial = partial.split(b"\n")
        for line in lines:
            rec = decode(line)
            if rec is not None:
                yield rec
        if finished and not chunk:
            return
        if not chunk:
            time.sleep(0.1)


def select(
    records: list[Record],
    *,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Record]:
    """``--since``, ``--until`` then ``--tail`` (``None``: all)."""
    out = [
        r
        for r in records
        if (since is None or r.time >= since) and (until is None or r.time < until)
    ]
    if tail is not None:
        out = out[-tail:] if tail > 0 else []
    return out
