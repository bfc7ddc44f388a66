"""The page as a person sees it: uvicorn serving, headless Chromium rendering."""

from __future__ import annotations

import html.parser
import os
import platform
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import screenshot  # noqa: E402

WIDTH, HEIGHT = 1000, 700


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    env = {
        **os.environ,
        "MANYARCH_IMAGE_REF": "localhost:5000/fastapi-multiarch:latest",
        "MANYARCH_IMAGE_FILE": str(log.parent / "absent.json"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        try:
            screenshot.wait_until_up(url + "healthz", timeout=30)
        except TimeoutError:
            pytest.fail(f"uvicorn did not start: {log.read_text()}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (filtered) scanlines of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


class _TextOf(html.parser.HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.text = element_id, 0, ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth or ("id", self.element_id) in attrs:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text += data


def text_of(dom: str, element_id: str) -> str:
    p = _TextOf(element_id)
    p.feed(dom)
    return p.text.strip()


def test_rendered_dom_shows_the_architecture(server: str) -> None:
    dom = screenshot.dump_dom(server)
    assert text_of(dom, "architecture") == platform.machine()
    assert text_of(dom, "platform").startswith("linux/")
    assert "Native" in text_of(dom, "emulation")
    assert "localhost:5000/fastapi-multiarch:latest" in dom


def test_screenshot_is_a_real_picture(server: str, tmp_path: Path) -> None:
    png = screenshot.screenshot(server, tmp_path / "page.png", size=f"{WIDTH},{HEIGHT}")
    data = png.read_bytes()
    width, height, raw = png_pixels(data)
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(data) > 10_000  # a blank page compresses to a few hundred bytes
    rows = len(raw) // height
    distinct_rows = {raw[i * rows + 1 : (i + 1) * rows] for i in range(height)}
    assert len(distinct_rows) > 50  # text and boxes, not a flat colour
    assert len(set(raw)) > 64


def test_script_refuses_without_output(server: str) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot.py"), server],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "give an output PNG file" in r.stderr


def test_script_reports_an_unreachable_page(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "screenshot.py"),
            "--wait",
            "0.5",
            f"http://127.0.0.1:{free_port()}/",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "did not answer" in r.stderr
