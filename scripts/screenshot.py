#!/usr/bin/env python3
"""Take a screenshot of a page with headless Chromium (and optionally dump its DOM).

    scripts/screenshot.py http://127.0.0.1:8080/ captures/fastapi-multiarch.png
    scripts/screenshot.py --dom http://127.0.0.1:8080/ > page.html

Standard library only, so the demo can call it with any python3.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Quiet, offline, reproducible: no sandbox (root in CI), no GPU, no phoning home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str:
    """The Chromium binary (Debian's ``chromium``), or raise FileNotFoundError."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("chromium is not installed: apt-get install chromium")


def wait_until_up(url: str, timeout: float) -> None:
    """Poll ``url`` until it answers (any HTTP status), or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.2)


def chromium(url: str, *action: str, size: str = "1000,700", timeout: float = 60) -> bytes:
    """Run headless Chromium on ``url`` with extra flags; its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            *action,
            url,
        ]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"chromium exited with {done.returncode}: {done.stderr.decode(errors='replace')[-800:]}"
        )
    return done.stdout


def screenshot(url: str, out: Path, size: str = "1000,700") -> Path:
    """Save a PNG of ``url`` at ``out``."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    chromium(url, f"--screenshot={out}", size=size)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot at {out}")
    return out


def dump_dom(url: str) -> str:
    """The DOM of ``url`` after Chromium rendered it."""
    return chromium(url, "--dump-dom").decode()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", nargs="?", type=Path, help="PNG file to write")
    parser.add_argument("--dom", action="store_true", help="print the rendered DOM")
    parser.add_argument("--size", default="1000,700", help="window size, WIDTH,HEIGHT")
    parser.add_argument("--wait", type=float, default=0, help="wait up to N s for the URL")
    args = parser.parse_args(argv)
    if args.out is None and not args.dom:
        parser.error("give an output PNG file, or --dom")
    try:
        if args.wait:
            wait_until_up(args.url, args.wait)
        if args.out is not None:
            print(f"screenshot: {screenshot(args.url, args.out, args.size)}", file=sys.stderr)
        if args.dom:
            sys.stdout.write(dump_dom(args.url))
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
