#!/usr/bin/env python3
"""Render a terminal recording (``script``'s typescript) to PNG images.

    scripts/captures.py term demo.typescript docs/captures/multi-arch \\
        --split '== Inspect the manifest list'

writes ``multi-arch-1.png``, ``multi-arch-2.png``: the screen as a person saw
it once the demo finished, cut before each ``--split`` line. The recording is
replayed through a small terminal emulator (enough for rich's live views:
carriage return, cursor up/down, erase line, colours), drawn as an SVG by
``rich`` and photographed by headless Chromium (``scripts/screenshot.py``).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot import chromium

#: CSI sequences (ESC [ params final), OSC (ESC ] ... BEL/ST), and other two-byte escapes.
_ESCAPE = re.compile(
    r"\x1b\[(?P<csi>[0-9;?]*)(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()][0-9A-Za-z]"
    r"|\x1b[=>78]"
)

#: Monospace fonts present without network (fonts-dejavu-core); rich's SVG asks for Fira Code.
_FONT = "'DejaVu Sans Mono', 'Liberation Mono', monospace"


@dataclass
class Screen:
    """A terminal with unlimited scroll-back: rows of (character, SGR) cells."""

    width: int
    rows: list[list[tuple[str, str]]] = field(default_factory=lambda: [[]])
    row: int = 0
    col: int = 0
    sgr: str = ""

    def feed(self, data: str) -> None:
        """Interpret ``data`` as a terminal would."""
        pos = 0
        for m in _ESCAPE.finditer(data):
            self._text(data[pos : m.start()])
            pos = m.end()
            if m.group("final") is not None:
                self._csi(m.group("csi"), m.group("final"))
        self._text(data[pos:])

    def _line(self) -> list[tuple[str, str]]:
        while self.row >= len(self.rows):
            self.rows.append([])
        return self.rows[self.row]

    def _text(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                self.row += 1
                self.col = 0  # script's pty turns \n into \r\n (onlcr)
                self._line()
            elif ch == "\r":
                self.col = 0
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\t":
                self.col = (self.col // 8 + 1) * 8
            elif ch in "\x07\x0e\x0f" or ch < " ":
                continue
            else:
                if self.col >= self.width:  # auto-wrap
                    self.row += 1
                    self.col = 0
                line = self._line()
                while len(line) < self.col:
                    line.append((" ", ""))
                cell = (ch, self.sgr)
                if self.col < len(line):
                    line[self.col] = cell
                else:
                    line.append(cell)
                self.col += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return  # private modes: cursor visibility, bracketed paste, ...
        args = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(args[0], 1) if args else 1
        line = self._line()
        if final == "m":
            # Keep the whole SGR state as one escape; rich reads it back.
            if not args or args == [0]:
                self.sgr = ""
            else:
                self.sgr += f"\x1b[{params}m"
        elif final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row += n
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = n - 1
        elif final == "K":
            mode = args[0] if args else 0
            if mode == 0:
                del line[self.col :]
            elif mode == 1:
                line[: self.col] = [(" ", "")] * min(self.col, len(line))
            else:
                line.clear()
        elif final == "J":
            mode = args[0] if args else 0
            if mode == 0:
                del line[self.col :]
                del self.rows[self.row + 1 :]
            elif mode == 2:
                self.rows = [[]]
                self.row = self.col = 0

    def lines(self) -> list[str]:
        """The screen as lines of ANSI text, trailing blank lines dropped."""
        out = []
        for cells in self.rows:
            parts, current = [], ""
            for ch, sgr in cells:
                if sgr != current:
                    parts.append("\x1b[0m" + sgr)
                    current = sgr
                parts.append(ch)
            out.append(("".join(parts) + ("\x1b[0m" if current else "")).rstrip())
        while out and not Text.from_ansi(out[-1]).plain.strip():
            out.pop()
        return out


def replay(typescript: Path, width: int) -> list[str]:
    """The final screen (with scroll-back) of a ``script`` recording."""
    data = typescript.read_bytes().decode("utf-8", errors="replace")
    # script(1) frames the recording with its own start/end lines.
    lines = data.split("\n")
    if lines and lines[0].startswith("Script started on"):
        data = "\n".join(lines[1:])
    data = re.sub(r"\n?Script done on [^\n]*\n?$", "", data)
    screen = Screen(width)
    screen.feed(data)
    return screen.lines()


def split(lines: list[str], markers: list[str]) -> list[list[str]]:
    """Cut ``lines`` before the first line containing each marker, in order."""
    parts: list[list[str]] = []
    start = 0
    for marker in markers:
        for i in range(start, len(lines)):
            if marker in Text.from_ansi(lines[i]).plain:
                parts.append(lines[start:i])
                start = i
                break
        else:
            raise SystemExit(f"captures: no line contains {marker!r}")
    parts.append(lines[start:])
    return parts


def elide(lines: list[str], keep: int) -> list[str]:
    """Keep at most ``keep`` lines: the head and the tail, and say how many were left out."""
    if len(lines) <= keep:
        return lines
    head = keep * 2 // 3
    tail = keep - head - 1
    gone = len(lines) - head - tail
    return [*lines[:head], f"\x1b[2m  [... {gone} lines not shown ...]\x1b[0m", *lines[-tail:]]


def svg(lines: list[str], width: int, title: str) -> tuple[str, int, int]:
    """The lines drawn as rich's terminal SVG; with its pixel width and height."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system="truecolor")
    for line in lines:
        console.print(Text.from_ansi(line), soft_wrap=False, overflow="crop", no_wrap=True)
    drawn = console.export_svg(title=title, font_aspect_ratio=0.61)
    # Offline: drop the web font, use a local monospace one.
    drawn = re.sub(r"@font-face\s*{[^}]*}", "", drawn)
    drawn = re.sub(r"font-family:\s*Fira Code[^;]*;", f"font-family: {_FONT};", drawn)
    m = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', drawn)
    if m is None:
        raise SystemExit("captures: rich drew an SVG without a viewBox")
    return drawn, int(float(m.group(1))) + 1, int(float(m.group(2))) + 1


def to_png(drawn: str, size: tuple[int, int], out: Path) -> None:
    """Photograph an SVG with headless Chromium."""
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="captures-") as tmp:
        page = Path(tmp) / "term.html"
        page.write_text(
            "<!doctype html><html><head><style>html,body{margin:0;padding:0;"
            "background:#fff;overflow:hidden}</style></head><body>" + drawn + "</body></html>"
        )
        chromium(page.as_uri(), f"--screenshot={out}", size=f"{size[0]},{size[1]}")
    if not out.is_file():
        raise SystemExit(f"captures: chromium wrote no screenshot at {out}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("typescript", type=Path)
    parser.add_argument("prefix", help="write PREFIX-1.png, PREFIX-2.png, ...")
    parser.add_argument("--split", action="append", default=[], help="start a new image here")
    parser.add_argument("--width", type=int, default=140, help="terminal columns")
    parser.add_argument("--max-lines", type=int, default=60, help="per step's output")
    parser.add_argument("--title", default="scripts/demo.sh")
    parser.add_argument("--text", type=Path, help="also write DIR/NAME-N.txt (plain text)")
    args = parser.parse_args(argv)

    lines = replay(args.typescript, args.width)
    parts = split(lines, args.split)
    for i, part in enumerate(parts, 1):
        part = elide_steps(part, args.max_lines)
        drawn, w, h = svg(part, args.width, args.title)
        out = Path(f"{args.prefix}-{i}.png")
        to_png(drawn, (w, h), out)
        if args.text:
            plain = "\n".join(Text.from_ansi(line).plain for line in part)
            args.text.mkdir(parents=True, exist_ok=True)
            (args.text / f"{Path(args.prefix).name}-{i}.txt").write_text(plain + "\n")
        print(f"captures: {out} ({len(part)} lines, {out.stat().st_size // 1024} KiB)")
    return 0


def elide_steps(lines: list[str], keep: int) -> list[str]:
    """Shorten each ``== step``'s output to ``keep`` lines (a build's log can be long)."""
    out: list[str] = []
    block: list[str] = []
    for line in lines:
        if Text.from_ansi(line).plain.startswith("== "):
            out += elide(block, keep)
            block = []
            out.append(line)
        else:
            block.append(line)
    return out + elide(block, keep)


if __name__ == "__main__":
    sys.exit(main())
