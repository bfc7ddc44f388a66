"""ONBUILD triggers run in the child build, as BuildKit runs them (pure): a stage FROM an
image or a stage with triggers runs them first, in order, as if written after its FROM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from manyarch.dockerfile.syntax import Instruction, parse


def trigger_instructions(triggers: Sequence[str], line: int, file: str) -> list[Instruction]:
    """The base's ONBUILD triggers as instructions of the stage (at its FROM line)."""
    out = []
    for text in triggers:
        (ins,) = parse(f"FROM scratch\n{text}\n", file=file).stages[0].instructions
        out.append(replace(ins, line=line, end_line=line))
    return out
