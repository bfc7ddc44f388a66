"""``-p`` parsing, and pasta forwarding into a real network namespace."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manyarch.errors import InvalidArgument, SandboxError
from manyarch.run.network import PortMapping, listening_ports, start_forwarding
from tests.helpers.registry_server import free_port


@pytest.mark.parametrize(
    ("text", "mapping", "spec"),
    [
        ("8080:80", PortMapping(8080, 80), "8080:80"),
        ("80:80/tcp", PortMapping(80, 80), "80:80"),
        ("127.0.0.1:8080:80", PortMapping(8080, 80, "tcp", "127.0.0.1"), "127.0.0.1/8080:80"),
        ("5353:53/udp", PortMapping(5353, 53, "udp"), "5353:53"),
        ("[::1]:8080:80", PortMapping(8080, 80, "tcp", "::1"), "::1/8080:80"),
    ],
)
def test_port_mappings(text: str, mapping: PortMapping, spec: str) -> None:
    assert PortMapping.parse(text) == mapping
    assert mapping.pasta_spec() == spec


@pytest.mark.parametrize("text", ["a:80", "8080:0", "0", "70000:80", "8080:80/sctp", ""])
def test_bad_port_mappings(text: str) -> None:
    with pytest.raises(InvalidArgument):
        PortMapping.parse(text)


@pytest.mark.parametrize(
    ("text", "family", "kind"),
    [
        ("80", socket.AF_INET, socket.SOCK_STREAM),
        ("127.0.0.1::80", socket.AF_INET, socket.SOCK_STREAM),
        ("53/udp", socket.AF_INET, socket.SOCK_DGRAM),
    ],
)
def test_without_a_host_port_a_free_one_is_chosen(text: str, family: int, kind: int) -> None:
    m = PortMapping.parse(text)
    assert m.host_port == 0
    chosen = m.with_host_port()
    assert 0 < chosen.host_port < 65536 and chosen.container_port == m.container_port
    with socket.socket(family, kind) as s:  # free: nothing holds it any more
        s.bind((m.host_ip or "0.0.0.0", chosen.host_port))
    assert PortMapping(8080, 80).with_host_port() == PortMapping(8080, 80)


@given(st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(["tcp", "udp"]))
def test_port_mapping_round_trips(host: int, ctr: int, proto: str) -> None:
    m = PortMapping(host, ctr, proto)
    assert PortMapping.parse(f"{host}:{ctr}/{proto}") == m
    assert PortMapping.from_json(m.to_json()) == m


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("pasta"), reason="needs root and pasta")
def test_pasta_forwards_a_host_port_into_a_namespace(tmp_path: Path) -> None:
    port, inner = free_port(), 8000
    server = subprocess.Popen(
        [
            "unshare",
            "--net",
            "sh",
            "-c",
            f"ip link set lo up; exec python3 -m http.server {inner} --bind 127.0.0.1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pasta = None
    try:
        time.sleep(0.3)
        pasta = start_forwarding(server.pid, [PortMapping(port, inner)], tmp_path / "pasta.log")
        assert port in listening_ports()
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(SandboxError, match="already in use"):
            start_forwarding(server.pid, [PortMapping(port, inner)], tmp_path / "p2.log")
    finally:
        if pasta is not None:
            pasta.terminate()
            pasta.wait()
        server.terminate()
        server.wait()
    with socket.socket() as s:  # the port is free again: no listener is left
        # SO_REUSEADDR only lets a bind through connections in TIME_WAIT; a
        # listener still holding the port makes it fail all the same
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
