"""fastapi-multiarch: a tiny service that tells which architecture it runs as.

``GET /arch`` is the seed's endpoint, unchanged. ``GET /platform`` adds the OCI
platform, Python, libc, kernel, whether QEMU emulates the process, and the
image it came from. The image is described by environment variables
(``MANYARCH_IMAGE_REF``, ``MANYARCH_IMAGE_DIGEST``, ``MANYARCH_IMAGE_PLATFORM``)
and/or a JSON file (``MANYARCH_IMAGE_FILE``, default ``/etc/manyarch/image.json``,
keys ``reference``, ``digest``, ``platform``); a variable wins over the file,
because a digest is only known once the image is built, so the file written
at build time cannot hold it, while ``manyarch run`` can set it.
"""

from __future__ import annotations

import html
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from app.sysinfo import Emulation, detect_emulation, oci_platform

DEFAULT_IMAGE_FILE = Path("/etc/manyarch/image.json")


@dataclass(frozen=True)
class Settings:
    """Where the service learns which image it was started from."""

    image_ref: str = ""
    image_digest: str = ""
    image_platform: str = ""
    image_file: Path = field(default=DEFAULT_IMAGE_FILE)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read the ``MANYARCH_IMAGE_*`` variables."""
        return cls(
            image_ref=environ.get("MANYARCH_IMAGE_REF", ""),
            image_digest=environ.get("MANYARCH_IMAGE_DIGEST", ""),
            image_platform=environ.get("MANYARCH_IMAGE_PLATFORM", ""),
            image_file=Path(environ.get("MANYARCH_IMAGE_FILE", str(DEFAULT_IMAGE_FILE))),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (a dependency; tests override it)."""
    return Settings.from_env()


def get_emulation() -> Emulation:
    """Whether QEMU runs this process (a dependency, so a page can be shown both ways)."""
    return detect_emulation()


class Arch(BaseModel):
    """The seed's answer: ``platform.machine()``."""

    architecture: str


class OciPlatformModel(BaseModel):
    """An OCI platform triple."""

    os: str
    architecture: str
    variant: str


class PythonInfo(BaseModel):
    """The interpreter serving the request."""

    version: str
    implementation: str


class LibcInfo(BaseModel):
    """The C library the interpreter is linked with (empty on musl)."""

    name: str
    version: str


class ImageInfo(BaseModel):
    """The image this process was started from, when its builder or runner said so."""

    reference: str | None = None
    digest: str | None = None
    platform: str | None = None


class PlatformReport(BaseModel):
    """Everything ``GET /platform`` tells."""

    platform: OciPlatformModel
    platform_name: str
    machine: str
    python: PythonInfo
    libc: LibcInfo
    kernel: str
    emulated: bool
    emulator: str | None
    host_machine: str | None
    image: ImageInfo | None


class Health(BaseModel):
    """Liveness."""

    status: str


def image_info(settings: Settings) -> ImageInfo | None:
    """The image description from the file and the environment; None when neither says."""
    recorded: dict[str, Any] = {}
    try:
        loaded = json.loads(settings.image_file.read_text())
        if isinstance(loaded, dict):
            recorded = loaded
    except (OSError, ValueError):
        pass

    def pick(env: str, *keys: str) -> str | None:
        if env:
            return env
        for k in keys:
            v = recorded.get(k)
            if isinstance(v, str) and v:
                return v
        return None

    info = ImageInfo(
        reference=pick(settings.image_ref, "reference", "ref"),
        digest=pick(settings.image_digest, "digest"),
        platform=pick(settings.image_platform, "platform"),
    )
    return info if info.reference or info.digest or info.platform else None


def platform_report(settings: Settings, emulation: Emulation) -> PlatformReport:
    """Describe this process."""
    p = oci_platform()
    libc_name, libc_version = platform.libc_ver()
    return PlatformReport(
        platform=OciPlatformModel(os=p.os, architecture=p.architecture, variant=p.variant),
        platform_name=str(p),
        machine=platform.machine(),
        python=PythonInfo(
            version=platform.python_version(),
            implementation=platform.python_implementation(),
        ),
        libc=LibcInfo(name=libc_name, version=libc_version),
        kernel=platform.release(),
        emulated=emulation.emulated,
        emulator=emulation.emulator or None,
        host_machine=emulation.host_machine or None,
        image=image_info(settings),
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
EmulationDep = Annotated[Emulation, Depends(get_emulation)]

app = FastAPI(title="fastapi-multiarch", summary="Tells which architecture it runs as.")


@app.get("/arch")
def arch() -> Arch:
    """The machine this process runs as, as in the seed: ``{"architecture": "x86_64"}``."""
    return Arch(architecture=platform.machine())


@app.get("/platform")
def platform_endpoint(settings: SettingsDep, emulation: EmulationDep) -> PlatformReport:
    """The OCI platform, interpreter, libc, kernel, emulation and image of this process."""
    return platform_report(settings, emulation)


@app.get("/healthz")
def healthz() -> Health:
    """Liveness probe for HEALTHCHECK."""
    return Health(status="ok")


@app.get("/", response_class=HTMLResponse)
def index(settings: SettingsDep, emulation: EmulationDep) -> HTMLResponse:
    """A page a person looks at."""
    return HTMLResponse(render_page(platform_report(settings, emulation)))


_CSS = """
:root { --bg:#f4f6fb; --card:#fff; --ink:#1c2333; --muted:#5d6781; --line:#e3e7f0;
  --accent:#2f6fec; --ok-bg:#e7f6ec; --ok-ink:#17663a; --warn-bg:#fff4d6; --warn-ink:#7a4b00;
  --warn-line:#f0c24b; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#0f131c; --card:#171d2a; --ink:#e8ecf5; --muted:#9aa5bf; --line:#283146;
    --accent:#7aa5ff; --ok-bg:#12301f; --ok-ink:#8be0ab; --warn-bg:#3a2c07; --warn-ink:#ffd77a;
    --warn-line:#a67c12; }
}
* { box-sizing: border-box; }
body { margin:0; min-height:100vh; background:var(--bg); color:var(--ink);
  font:16px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  display:flex; align-items:center; justify-content:center; padding:24px; }
main { width:100%; max-width:760px; background:var(--card); border:1px solid var(--line);
  border-radius:16px; padding:28px 36px; box-shadow:0 8px 30px rgba(20,30,60,.08); }
.eyebrow { margin:0; color:var(--muted); font-size:13px; letter-spacing:.08em;
  text-transform:uppercase; }
.arch { margin:4px 0 2px; font-size:76px; line-height:1.05; font-weight:800;
  letter-spacing:-.02em; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.oci { display:inline-block; margin:6px 0 18px; padding:3px 12px; border-radius:999px;
  background:var(--accent); color:#fff; font-weight:600; font-size:15px;
  font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.notice { border-radius:10px; padding:12px 16px; margin:0 0 18px; font-size:15px; }
.notice.native { background:var(--ok-bg); color:var(--ok-ink); }
.notice.emulated { background:var(--warn-bg); color:var(--warn-ink);
  border:1px solid var(--warn-line); }
.notice strong { display:block; font-size:16px; }
table { width:100%; border-collapse:collapse; font-size:15px; }
th, td { text-align:left; padding:7px 0; border-top:1px solid var(--line); vertical-align:top; }
th { width:30%; color:var(--muted); font-weight:500; }
td { font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break:break-all; }
footer { margin-top:18px; color:var(--muted); font-size:13px; }
footer a { color:var(--accent); text-decoration:none; margin-right:14px; }
"""


def render_page(report: PlatformReport) -> str:
    """The HTML page for a report; self-contained (no external assets)."""
    e = html.escape
    if report.emulated:
        how = f" by <code>{e(report.emulator)}</code>" if report.emulator else ""
        host = f" on a {e(report.host_machine)} kernel" if report.host_machine else ""
        notice = (
            '<div class="notice emulated" id="emulation" role="status">'
            "<strong>\u26a0 Running under emulation (QEMU)</strong>"
            f"This {e(report.machine)} program is translated instruction by instruction{how}"
            f"{host}: it works, but slower than a native image would.</div>"
        )
    else:
        notice = (
            '<div class="notice native" id="emulation" role="status">'
            "<strong>Native</strong>"
            f"The CPU runs this {e(report.machine)} program directly, without emulation.</div>"
        )
    rows: list[tuple[str, str]] = [
        ("OCI platform", report.platform_name),
        ("Machine", report.machine),
        ("Python", f"{report.python.implementation} {report.python.version}"),
        ("libc", f"{report.libc.name} {report.libc.version}".strip() or "unknown"),
        ("Kernel", report.kernel + (f" ({report.host_machine})" if report.host_machine else "")),
    ]
    if report.image is not None:
        if report.image.reference:
            rows.append(("Image", report.image.reference))
        if report.image.digest:
            rows.append(("Digest", report.image.digest))
        if report.image.platform:
            rows.append(("Built for", report.image.platform))
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>fastapi-multiarch · {e(report.machine)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<p class="eyebrow">fastapi-multiarch is running as</p>
<h1 class="arch" id="architecture">{e(report.machine)}</h1>
<span class="oci" id="platform">{e(report.platform_name)}</span>
{notice}
<table>{table}</table>
<footer>
<a href="/arch">/arch</a><a href="/platform">/platform</a><a href="/healthz">/healthz</a>
</footer>
</main>
</body>
</html>
"""
