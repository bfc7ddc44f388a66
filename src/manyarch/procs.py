"""Processes by pid, told apart from a later process that reuses the pid by their start time."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int) -> list[str]:
    # the fields after the command name, which may itself hold spaces and parentheses
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str:
    """The process's start time (clock ticks after boot), "" when there is no such process."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def alive(pid: int, start: str) -> bool:
    """The very process that had ``start`` as its start time still exists."""
    return pid > 0 and bool(start) and start_time(pid) == start


def comm(pid: int) -> str:
    """The process's command name, "" when there is no such process."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
