"""A pull or a run killed in the middle (SIGKILL: no clean-up) leaves nothing that
``manyarch prune`` cannot take away, and doing it again reuses or removes the rest."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from manyarch.layers import TarEntry, write_layer
from manyarch.layers.entry import EntryType
from manyarch.layout import Layout
from manyarch.oci import ContainerConfig, History, ImageConfig, Index, Manifest, Platform
from manyarch.oci import mediatypes as mt
from tests.helpers.registry_server import RegistryServer

pytestmark = pytest.mark.integration

AMD64 = Platform.parse("linux/amd64")


def _big_image(tmp_path: Path) -> Path:
    """A layout with one image: a 16 MiB random file and 3000 small ones (slow to unpack)."""
    layout = Layout.open(tmp_path / "big", create=True)
    entries = [
        TarEntry("data", EntryType.DIR, 0o755),
        TarEntry("data/blob", source=os.urandom(16 << 20)),
    ]
    entries += [TarEntry(f"data/f{i}", source=b"x" * 100) for i in range(3000)]
    cfg = ImageConfig("amd64", "linux", config=ContainerConfig(cmd=("/bin/sh",)))
    with layout.writer() as w:
        info = write_layer(entries, cast(BinaryIO, w))
        w.commit(info.digest)
    cfg = cfg.with_layer(info.diff_id, History(created_by="test"))
    manifest = Manifest(layout.put_document(cfg.to_document()), (info.descriptor(),))
    mdesc = layout.put_document(manifest.to_document()).with_platform(AMD64)
    layout.tag("latest", layout.put_document(Index((mdesc,), mt.OCI_INDEX).to_document()))
    return layout.path


class Throttle:
    """A loopback TCP proxy that passes the server's bytes at about 1 MiB/s."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, 0.06), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, pause: float) -> None:
        try:
            while not self.stop.is_set() and (data := src.recv(65536)):
                dst.sendall(data)
                time.sleep(pause)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = dict(os.environ)
    for var, name in [("MANYARCH_STORE", "store"), ("XDG_DATA_HOME", "data"),
                      ("XDG_CACHE_HOME", "cache"), ("MANYARCH_TMPDIR", "work")]:  # fmt: skip
        out[var] = str(tmp_path / name)
    (tmp_path / "work").mkdir()
    return out


@pytest.fixture
def pushed(tmp_path: Path, registry: RegistryServer) -> Iterator[tuple[str, str]]:
    """The big image in the registry: (its name there, its name through the throttle)."""
    name = f"killed/big-{tmp_path.name[-8:].lower().strip('_')}:latest".replace("_", "-")
    r = subprocess.run(
        [sys.executable, "-m", "manyarch", "copy", f"oci-layout://{_big_image(tmp_path)}:latest",
         f"{registry.host}/{name}"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    throttle = Throttle(registry.host)
    yield f"{registry.host}/{name}", f"{throttle.host}/{name}"
    throttle.close()


def manyarch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manyarch", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _kill_when(env: dict[str, str], args: list[str], ready: Callable[[], bool]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "manyarch", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None, "the command ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _temporaries(*roots: Path) -> list[str]:
    return sorted(str(p) for r in roots if r.exists() for p in r.rglob(".tmp-*"))


def test_a_killed_pull_leaves_nothing_prune_cannot_remove(
    env: dict[str, str], pushed: tuple[str, str]
) -> None:
    direct, throttled = pushed
    store = Path(env["MANYARCH_STORE"])

    def downloading() -> bool:
        return any(p.stat().st_size > 0 for p in store.rglob(".tmp-*") if p.is_file())

    _kill_when(env, ["pull", "--platform", "linux/amd64", throttled], downloading)
    assert _temporaries(store), "a SIGKILLed pull cannot clean up"
    r = manyarch(env, "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert _temporaries(store) == []
    # killed again, then pulled again
    _kill_when(env, ["pull", "--platform", "linux/amd64", throttled], downloading)
    assert _temporaries(store)
    r = manyarch(env, "pull", "--platform", "linux/amd64", direct)
    assert r.returncode == 0, r.stderr
    assert _temporaries(store) == [], "the pull again removes what the killed one left"


def test_a_killed_unpack_leaves_nothing_prune_cannot_remove(
    env: dict[str, str], pushed: tuple[str, str]
) -> None:
    direct, _ = pushed
    data = Path(env["XDG_DATA_HOME"])
    r = manyarch(env, "pull", "--platform", "linux/amd64", direct)
    assert r.returncode == 0, r.stderr

    def unpacking() -> bool:
        return any((data / "manyarch" / "rootfs").glob(".tmp-*/data/f1*"))

    run = ["run", "--rm", "--platform", "linux/amd64", direct, "true"]
    _kill_when(env, run, unpacking)
    assert _temporaries(data), "a SIGKILLed unpack cannot clean up"
    r = manyarch(env, "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert _temporaries(data) == []
    # killed again, then the next unpack of the same image removes what was left
    _kill_when(env, run, unpacking)
    assert _temporaries(data)
    manyarch(env, *run)  # the image has no `true`: only its unpacking matters here
    assert _temporaries(data) == []
