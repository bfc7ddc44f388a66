"""``docs/api.md`` runs as written: its Python blocks, in order, in one namespace, against
the session registry and the tiny base (blocks marked ``python notest`` need root or
credentials and are only compiled)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests.helpers.registry_server import RegistryServer
from tests.helpers.tiny_base import TinyBase, tiny_base

__all__ = ["tiny_base"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
_BLOCK = re.compile(r"^```python( notest)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[bool, str]]:
    """``(runs, code)`` of every Python block of the document, in order."""
    return [(not m.group(1), m.group(2)) for m in _BLOCK.finditer(DOC.read_text())]


def test_the_document_has_examples() -> None:
    found = blocks()
    assert len([b for b in found if b[0]]) >= 10
    for _, code in found:
        compile(code, str(DOC), "exec")


@pytest.mark.slow
def test_the_examples_run(
    tmp_path: Path,
    isolated_build: Path,
    registry: RegistryServer,
    tiny_base: TinyBase,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REGISTRY", registry.host)
    monkeypatch.setenv("BASE_IMAGE", tiny_base.ref)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict[str, object] = {"__name__": "api_md"}
    for runs, code in blocks():
        if runs:
            exec(compile(code, str(DOC), "exec"), namespace)
    out = capfd.readouterr().out  # the container writes to the process's own stdout
    assert f"{registry.host}/api-demo:1@sha256:" in out
    assert "Manifests:" in out and "Platform:  linux/arm64" in out
    assert "exit code 0" in out and "aarch64" in out
