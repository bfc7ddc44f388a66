"""The demo service through FastAPI's TestClient."""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import Settings, app, get_emulation, get_settings, image_info
from app.sysinfo import Emulation, oci_platform


@pytest.fixture
def client() -> Iterator[TestClient]:
    app.dependency_overrides.clear()
    with TestClient(app) as c:
        yield c
    app.dependency_overrides.clear()


def use(settings: Settings | None = None, emulation: Emulation | None = None) -> None:
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    if emulation is not None:
        app.dependency_overrides[get_emulation] = lambda: emulation


def test_arch_is_the_seeds_answer(client: TestClient) -> None:
    r = client.get("/arch")
    assert r.status_code == 200
    assert r.json() == {"architecture": platform.machine()}


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_platform_describes_this_process(client: TestClient, tmp_path: Path) -> None:
    use(Settings(image_file=tmp_path / "absent.json"))
    body = client.get("/platform").json()
    p = oci_platform()
    assert body["platform"] == {"os": p.os, "architecture": p.architecture, "variant": p.variant}
    assert body["platform_name"] == str(p)
    assert body["machine"] == platform.machine()
    assert body["python"] == {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    assert body["libc"] == dict(zip(("name", "version"), platform.libc_ver(), strict=True))
    assert body["kernel"] == platform.release()
    assert body["emulated"] is False  # the tests run natively
    assert body["image"] is None


@pytest.mark.parametrize(
    ("env", "recorded", "expected"),
    [
        ({}, None, None),
        (
            {"image_ref": "localhost:5000/fastapi-multiarch:latest"},
            None,
            {
                "reference": "localhost:5000/fastapi-multiarch:latest",
                "digest": None,
                "platform": None,
            },
        ),
        (
            {},
            {"reference": "r:1", "digest": "sha256:" + "a" * 64, "platform": "linux/arm64"},
            {"reference": "r:1", "digest": "sha256:" + "a" * 64, "platform": "linux/arm64"},
        ),
        ({}, {"ref": "short:key"}, {"reference": "short:key", "digest": None, "platform": None}),
        (
            {"image_digest": "sha256:" + "b" * 64},
            {"reference": "r:1", "digest": "sha256:" + "a" * 64},
            {"reference": "r:1", "digest": "sha256:" + "b" * 64, "platform": None},
        ),
        ({}, ["not", "an", "object"], None),
        ({}, {"reference": 42}, None),
    ],
)
def test_image_from_environment_and_file(
    client: TestClient,
    tmp_path: Path,
    env: dict[str, str],
    recorded: object,
    expected: dict[str, str | None] | None,
) -> None:
    f = tmp_path / "image.json"
    if recorded is not None:
        f.write_text(json.dumps(recorded))
    use(Settings(image_file=f, **env))
    assert client.get("/platform").json()["image"] == expected


def test_unreadable_image_file_is_ignored(tmp_path: Path) -> None:
    f = tmp_path / "image.json"
    f.write_text("{not json")
    assert image_info(Settings(image_file=f)) is None


def test_settings_from_environment() -> None:
    s = Settings.from_env(
        {
            "MANYARCH_IMAGE_REF": "localhost:5000/x:1",
            "MANYARCH_IMAGE_DIGEST": "sha256:" + "c" * 64,
            "MANYARCH_IMAGE_PLATFORM": "linux/arm64",
            "MANYARCH_IMAGE_FILE": "/run/image.json",
        }
    )
    assert s == Settings(
        "localhost:5000/x:1", "sha256:" + "c" * 64, "linux/arm64", Path("/run/image.json")
    )
    assert Settings.from_env({}) == Settings()
    assert Settings().image_file == Path("/etc/manyarch/image.json")


def test_page_shows_the_architecture_natively(client: TestClient, tmp_path: Path) -> None:
    use(Settings(image_file=tmp_path / "absent.json"), Emulation(False, host_machine="x86_64"))
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert f'<h1 class="arch" id="architecture">{platform.machine()}</h1>' in page
    assert str(oci_platform()) in page
    assert "Native" in page
    assert "QEMU" not in page


def test_page_warns_under_emulation(client: TestClient, tmp_path: Path) -> None:
    use(
        Settings(image_file=tmp_path / "absent.json"),
        Emulation(True, emulator="/usr/bin/qemu-aarch64-static", host_machine="x86_64"),
    )
    page = client.get("/").text
    assert 'class="notice emulated"' in page
    assert "Running under emulation (QEMU)" in page
    assert "/usr/bin/qemu-aarch64-static" in page
    assert "Native" not in page


def test_page_escapes_what_it_shows(client: TestClient, tmp_path: Path) -> None:
    use(Settings(image_ref='<script>alert("x")</script>', image_file=tmp_path / "absent.json"))
    page = client.get("/").text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/").text
    # No stylesheet, script, font or image from elsewhere: the page works offline.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    assert "<script" not in page
    assert "<style>" in page
