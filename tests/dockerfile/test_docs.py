"""docs/dockerfile.md names every instruction, every flag the parser knows and every
``RUN --mount`` type and field, each with a status: nothing is silently ignored."""

from __future__ import annotations

from pathlib import Path

from manyarch.dockerfile import mounts, syntax

DOC = Path(__file__).resolve().parents[2] / "docs" / "dockerfile.md"
STATUSES = ("supported", "differs", "refused")


def test_every_instruction_and_flag_has_a_status() -> None:
    text = DOC.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    missing = [i for i in sorted(syntax.INSTRUCTIONS) if not any(f"`{i}`" in r for r in rows)]
    for cmd, flags in syntax._FLAGS.items():
        if cmd == "HEALTHCHECK":
            continue  # HEALTHCHECK's flags are its options, listed with it
        for flag in flags:
            name = f"`{cmd} --{flag}`"
            row = next((r for r in rows if r.startswith(f"| {name}")), None)
            if row is None or not any(f"| {s}" in row for s in STATUSES):
                missing.append(name)
    assert missing == []


def test_every_mount_type_and_field_is_documented() -> None:
    text = DOC.read_text()
    assert all(f"`type={t}" in text for t in mounts.MOUNT_TYPES)
    fields = {k for k in mounts._KEYS if k not in ("src", "dst", "destination")}
    assert sorted(k for k in fields if f"`{k}`" not in text and f"`{k}/" not in text) == []
