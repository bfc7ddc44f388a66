"""HEALTHCHECK as docker runs it: a probe in the container every interval, a status.

The image's ``Healthcheck`` (or ``--health-*``; ``--no-healthcheck`` turns it
off) is run by the supervisor in the container's namespaces (as ``exec``
runs a command). Failures during the start period do not count; a success
makes it ``healthy``; ``retries`` failures in a row make it ``unhealthy``. The
status is kept in ``health.json`` beside ``state.json`` (docker's
``.State.Health``), which ``ps`` shows as ``(healthy)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manyarch.errors import InvalidArgument
from manyarch.units import parse_go_duration

HEALTH_FILE = "health.json"
NANOS = 1_000_000_000
#: docker's defaults (daemon/health.go)
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
#: docker keeps the last five results and 4 KiB of each probe's output
KEEP = 5
MAX_OUTPUT = 4096


@dataclass(frozen=True)
class Healthcheck:
    """A probe and its timing, in seconds."""

    test: tuple[str, ...]  # ("CMD", prog, args...) or ("CMD-SHELL", "script")
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    start_period: float = 0.0
    start_interval: float = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES

    @classmethod
    def from_config(cls, obj: Mapping[str, Any] | None) -> Healthcheck | None:
        """From an image config's ``Healthcheck`` (durations in ns); None for none or NONE."""
        if not obj or not obj.get("Test") or obj["Test"][0] == "NONE":
            return None
        test = tuple(str(x) for x in obj["Test"])
        if test[0] not in ("CMD", "CMD-SHELL"):
            test = ("CMD-SHELL", " ".join(test))

        def secs(key: str, default: float) -> float:
            v = obj.get(key)
            return float(v) / NANOS if v else default

        return cls(
            test,
            secs("Interval", DEFAULT_INTERVAL),
            secs("Timeout", DEFAULT_TIMEOUT),
            secs("StartPeriod", 0.0),
            secs("StartInterval", DEFAULT_START_INTERVAL),
            int(obj.get("Retries") or DEFAULT_RETRIES),
        )

    def to_config(self) -> dict[str, Any]:
        """Docker's JSON (``.Config.Healthcheck``)."""
        return {
            "Test": list(self.test),
            "Interval": int(self.interval * NANOS),
            "Timeout": int(self.timeout * NANOS),
            "StartPeriod": int(self.start_period * NANOS),
            "StartInterval": int(self.start_interval * NANOS),
            "Retries": self.retries,
        }

    def argv(self, shell: Sequence[str] = ("/bin/sh", "-c")) -> list[str]:
        """The command to run in the container."""
        if self.test[0] == "CMD-SHELL":
            return [*shell, self.test[1] if len(self.test) > 1 else ""]
        return list(self.test[1:])


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        value = parse_go_duration(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid {flag} {text!r}", "a Go duration: 30s, 1m30s, 500ms") from e
    if value < 0:
        raise InvalidArgument(f"{flag} cannot be negative")
    return value


def from_flags(
    image: Healthcheck | None,
    *,
    cmd: str | None = None,
    interval: str | None = None,
    timeout: str | None = None,
    start_period: str | None = None,
    start_interval: str | None = None,
    retries: int | None = None,
    disabled: bool = False,
) -> Healthcheck | None:
    """The image's check with ``--health-*`` over it (docker's merge); None when off."""
    given = [cmd, interval, timeout, start_period, start_interval, retries]
    if disabled:
        if any(v is not None for v in given):
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return None
    if cmd is None and image is None:
        if any(v is not None for v in given):
            raise InvalidArgument(
                "--health-* timings need a check: the image has none", "add --health-cmd CMD"
            )
        return None
    base = image or Healthcheck(("CMD-SHELL", cmd or ""))
    if retries is not None and retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")

    def pick(value: float | None, old: float) -> float:
        return old if value is None or value == 0 else value

    return Healthcheck(
        ("CMD-SHELL", cmd) if cmd is not None else base.test,
        pick(_duration(interval, "--health-interval"), base.interval),
        pick(_duration(timeout, "--health-timeout"), base.timeout),
        _duration(start_period, "--health-start-period") or base.start_period,
        pick(_duration(start_interval, "--health-start-interval"), base.start_interval),
        retries if retries else base.retries,
    )


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def read_status(directory: Path) -> dict[str, Any] | None:
    """The container's ``.State.Health`` (None: it has no health check)."""
    try:
        obj: dict[str, Any] = json.loads((directory / HEALTH_FILE).read_text())
    except (OSError, ValueError):
        return None
    return obj


def _write(directory: Path, obj: dict[str, Any]) -> None:
    path = directory / HEALTH_FILE
    tmp = path.with_name(f".{HEALTH_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


#: Runs a probe in the container: (argv, timeout) -> (exit code, output)
Probe = Callable[[list[str], float], tuple[int, bytes]]


class Monitor:
    """Runs the probe on a thread until stopped; records docker's ``Health`` object."""

    def __init__(self, check: Healthcheck, directory: Path, probe: Probe) -> None:
        self.check = check
        self.directory = directory
        self.probe = probe
        self.stopped = threading.Event()
        self.state: dict[str, Any] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        """Begin probing (the status is ``starting`` until the first verdict)."""
        _write(self.directory, self.state)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing (a probe running now is left to its timeout)."""
        self.stopped.set()
        self._thread.join(timeout=self.check.timeout + 1)

    def _loop(self) -> None:
        began = time.monotonic()
        while True:
            in_start = time.monotonic() - began < self.check.start_period
            wait = self.check.start_interval if in_start else self.check.interval
            if self.stopped.wait(wait):
                return
            self.run_once(in_start=time.monotonic() - began < self.check.start_period)

    def run_once(self, *, in_start: bool = False) -> None:
        """One probe and its verdict."""
        start = _now()
        try:
            code, output = self.probe(self.check.argv(), self.check.timeout)
        except subprocess.TimeoutExpired:
            code, output = -1, f"Health check exceeded timeout ({self.check.timeout:g}s)".encode()
        except OSError as e:
            code, output = -1, str(e).encode()
        if self.stopped.is_set():
            return
        entry = {
            "Start": start,
            "End": _now(),
            "ExitCode": code,
            "Output": output[:MAX_OUTPUT].decode(errors="replace"),
        }
        state = self.state
        state["Log"] = [*state["Log"], entry][-KEEP:]
        if code == 0:
            state["Status"], state["FailingStreak"] = "healthy", 0
        elif not in_start or state["Status"] != "starting":
            state["FailingStreak"] += 1
            if state["FailingStreak"] >= self.check.retries:
                state["Status"] = "unhealthy"
        _write(self.directory, state)
