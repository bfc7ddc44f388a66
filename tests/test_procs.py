"""Processes told apart by their start time, so a reused pid is not mistaken for its owner."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from manyarch import procs


def test_this_process() -> None:
    me = os.getpid()
    start = procs.start_time(me)
    assert start.isdigit()
    assert procs.alive(me, start) and procs.running(me)
    assert not procs.alive(me, str(int(start) + 1))  # same pid, another process
    assert not procs.alive(me, "") and not procs.alive(0, start)
    assert procs.comm(me)


def test_a_zombie_is_not_running_and_a_reaped_process_is_gone() -> None:
    p = subprocess.Popen(["true"])
    stat = Path(f"/proc/{p.pid}/stat")
    deadline = time.monotonic() + 10
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped yet
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert procs.start_time(p.pid) and not procs.running(p.pid)
    p.wait()
    assert procs.start_time(p.pid) == "" and procs.comm(p.pid) == ""
