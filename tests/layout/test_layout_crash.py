"""A writer killed with SIGKILL leaves a layout that verifies; gc clears its leftovers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from layout_image import Image

from manyarch.layout import Layout

BIG_WRITER = """
import sys, time
from manyarch.layout import Layout
layout = Layout.open(sys.argv[1])
def endless():
    while True:
        yield b"x" * 65536
        time.sleep(0.001)
layout.put_stream(endless())
"""

TAGGER = """
import sys
from manyarch.layout import Layout
layout = Layout.open(sys.argv[1])
desc = layout.resolve("seed")
print("ready", flush=True)
i = 0
while True:
    layout.tag(f"t{i % 20}", desc)
    i += 1
"""


def _temps(layout: Layout) -> list[Path]:
    return [p for p in layout.path.rglob(".tmp-*")]


def test_killed_blob_writer_leaves_a_layout_that_verifies(image: Image) -> None:
    layout = image.layout
    layout.tag("multi", image.index)
    blobs_before = sorted(p.name for p in (layout.path / "blobs" / "sha256").iterdir())
    proc = subprocess.Popen([sys.executable, "-c", BIG_WRITER, str(layout.path)])
    try:
        deadline = time.monotonic() + 15
        while not any(p.stat().st_size > 2 << 20 for p in _temps(layout)):
            assert proc.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer never wrote 2 MiB"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (temp,) = _temps(layout)
    assert temp.parent == layout.path / "blobs" / "sha256"
    # No partial blob under a final name; the half-written temp file is not a problem.
    assert sorted(p.name for p in temp.parent.iterdir() if p != temp) == blobs_before
    assert layout.verify() == []
    # The dead writer's flock is gone, so gc may take its file at once.
    assert layout.gc() == []
    assert _temps(layout) == []
    assert layout.verify() == []


def test_killed_tagger_leaves_a_readable_index(image: Image) -> None:
    layout = image.layout
    layout.tag("seed", image.index)
    for delay in (0.05, 0.13, 0.21):
        proc = subprocess.Popen(
            [sys.executable, "-c", TAGGER, str(layout.path)], stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert layout.verify() == []
        assert layout.resolve("seed") == image.index
    assert len(layout.tags()) > 1
    layout.gc()
    assert _temps(layout) == []
