"""``-m/--memory``, ``--cpus``, ``--pids-limit``: a cgroup per container, where one may be made.

With no daemon there is no cgroup manager: the limits are applied only when
this process may create cgroups below its own, i.e. when the machine
delegates the controllers to it (root on cgroup v1; on cgroup v2 a cgroup
whose ``cgroup.subtree_control`` lists them, as systemd's ``Delegate=yes``
gives). Elsewhere a limit is refused with a message naming the flag and
why, never silently ignored. The container's process is moved into the
cgroup while bwrap holds it (``--block-fd``), before the program runs, so
everything it starts is inside; the cgroup is removed with the container.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.errors import InvalidArgument, LimitsUnavailable

PERIOD_US = 100_000  # docker's CFS period


@dataclass(frozen=True)
class Limits:
    """What ``-m``, ``--cpus`` and ``--pids-limit`` asked for (0: no limit)."""

    memory: int = 0
    cpus: float = 0.0
    pids: int = 0

    def __bool__(self) -> bool:
        return bool(self.memory or self.cpus or self.pids)

    def controllers(self) -> list[str]:
        """The controllers these limits need."""
        return [
            c for c, v in (("memory", self.memory), ("cpu", self.cpus), ("pids", self.pids)) if v
        ]

    def words(self) -> str:
        """The limits given, for messages (``the memory and process limits``)."""
        names = {"memory": "memory", "cpu": "CPU", "pids": "process"}
        given = [names[c] for c in self.controllers()]
        joined = ", ".join(given[:-1]) + " and " + given[-1] if len(given) > 1 else given[0]
        return f"the {joined} limit{'s' if len(given) > 1 else ''}"

    def validate(self) -> None:
        """docker's lower bounds."""
        if self.memory and self.memory < 6 * 1024 * 1024:
            raise InvalidArgument("minimum memory limit allowed is 6MB", "give -m 6m or more")
        if self.cpus < 0 or self.pids < 0:
            raise InvalidArgument("--cpus and --pids-limit cannot be negative")
        ncpu = os.cpu_count() or 1
        if self.cpus > ncpu:
            raise InvalidArgument(
                f"range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )


@dataclass
class Mounts:
    """Where the cgroup hierarchies are mounted, and this process's place in them."""

    v2: Path | None = None
    v1: dict[str, Path] = field(default_factory=dict)
    own: dict[str, str] = field(default_factory=dict)  # controller ("" for v2) -> own path

    @classmethod
    def read(
        cls,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        cgroup: Path = Path("/proc/self/cgroup"),
    ) -> Mounts:
        """From ``/proc/self/mountinfo`` and ``/proc/self/cgroup``."""
        out = cls()
        try:
            info = mountinfo.read_text().splitlines()
            own = cgroup.read_text().splitlines()
        except OSError:
            return out
        for line in info:
            pre, _, post = line.partition(" - ")
            fields, rest = pre.split(), post.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            point, fstype, options = Path(fields[4]), rest[0], rest[2].split(",")
            if fstype == "cgroup2" and out.v2 is None:
                out.v2 = point
            elif fstype == "cgroup":
                for c in ("memory", "cpu", "pids"):
                    if c in options:
                        out.v1.setdefault(c, point)
        for entry in own:
            num, _, tail = entry.partition(":")
            ctrls, _, path = tail.partition(":")
            if num == "0" and not ctrls:
                out.own[""] = path
            for c in ctrls.split(","):
                if c in ("memory", "cpu", "pids"):
                    out.own[c] = path
        return out

    def v2_usable(self, wanted: Sequence[str]) -> Path | None:
        """The v2 cgroup under which ``wanted`` controllers are delegated, if any."""
        if self.v2 is None or "" not in self.own:
            return None
        base = self.v2 / self.own[""].lstrip("/")
        try:
            enabled = (base / "cgroup.subtree_control").read_text().split()
        except OSError:
            return None
        ctrl = {"memory": "memory", "cpu": "cpu", "pids": "pids"}
        return base if all(ctrl[c] in enabled for c in wanted) else None


def _why(limits: Limits, mounts: Mounts, detail: str) -> LimitsUnavailable:
    return LimitsUnavailable(
        f"{limits.words()} need cgroups, and this machine does not delegate them to manyarch "
        f"({detail})",
        "run as root on a machine with cgroup v1 or v2 controllers, or in a systemd scope "
        "that delegates them (systemd-run --scope -p Delegate=yes ...); or go without",
    )


@dataclass
class Cgroup:
    """One container's cgroup directories (one per hierarchy used)."""

    paths: list[Path]
    version: int

    def add(self, pid: int) -> None:
        """Move ``pid`` in."""
        for p in self.paths:
            (p / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        """Whether the kernel killed something in it for lack of memory."""
        for p in self.paths:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (p / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and value.strip() not in ("", "0"):
                            return True
        return False

    def remove(self) -> None:
        """Remove the directories (they empty once the processes are gone)."""
        for p in self.paths:
            for _ in range(50):
                try:
                    p.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    time.sleep(0.02)


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def create(name: str, limits: Limits, mounts: Mounts | None = None) -> Cgroup:
    """A cgroup named ``name`` with ``limits`` set (:class:`LimitsUnavailable` if impossible)."""
    m = mounts or Mounts.read()
    wanted = limits.controllers()
    base = m.v2_usable(wanted)
    try:
        if base is not None and not any(c in m.v1 for c in wanted):
            path = base / f"manyarch-{name}"
            _mkdir(path)
            cg = Cgroup([path], 2)
            if limits.memory:
                (path / "memory.max").write_text(str(limits.memory))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            if limits.cpus:
                (path / "cpu.max").write_text(f"{int(limits.cpus * PERIOD_US)} {PERIOD_US}")
            if limits.pids:
                (path / "pids.max").write_text(str(limits.pids))
            return cg
        missing = [c for c in wanted if c not in m.v1]
        if missing:
            raise _why(limits, m, f"no {'/'.join(missing)} controller is mounted for it")
        paths: dict[str, Path] = {}
        for c in wanted:
            paths[c] = m.v1[c] / m.own.get(c, "/").lstrip("/") / f"manyarch-{name}"
        made: list[Path] = []
        for p in dict.fromkeys(paths.values()):
            _mkdir(p)
            made.append(p)
        cg = Cgroup(made, 1)
        if limits.memory:
            (paths["memory"] / "memory.limit_in_bytes").write_text(str(limits.memory))
            # docker's default --memory-swap: as much swap again
            with contextlib.suppress(OSError):
                swap = paths["memory"] / "memory.memsw.limit_in_bytes"
                swap.write_text(str(2 * limits.memory))
        if limits.cpus:
            (paths["cpu"] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (paths["cpu"] / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * PERIOD_US)))
        if limits.pids:
            (paths["pids"] / "pids.max").write_text(str(limits.pids))
        return cg
    except OSError as e:
        raise _why(limits, m, f"{e.filename}: {e.strerror}") from e


def check(limits: Limits, mounts: Mounts | None = None) -> None:
    """Refuse, before anything is pulled or made, limits this machine cannot apply."""
    if not limits:
        return
    limits.validate()
    cg = create(f"probe-{os.getpid()}", limits, mounts)
    cg.remove()
