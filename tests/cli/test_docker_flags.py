"""docs/run.md lists every flag of docker's run, ps, logs and images with manyarch's status;
the parsers agree: a supported flag is known, a refused one is refused by name, none is
accepted and ignored."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from manyarch.cli.common import UsageError
from manyarch.cli.main import build_parser
from manyarch.cli.refused import REFUSED, _Refuse

DOC = Path(__file__).resolve().parents[2] / "docs" / "run.md"
COMMANDS = ("run", "ps", "logs", "images")


def _rows(command: str) -> list[tuple[tuple[str, ...], str]]:
    text = DOC.read_text()
    section = text.split(f"### `docker {command}`", 1)[1].split("###", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"^\| (`-[^|]*) \| (supported|differs|refused) \|", line)
        if m:
            rows.append((tuple(re.findall(r"`(-[-\w]+)`", m.group(1))), m.group(2)))
    return rows


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[command]
    p.format_help()  # deferred flags added
    return p


@pytest.mark.parametrize("command", COMMANDS)
def test_every_listed_flag_is_what_the_table_says(command: str) -> None:
    rows = _rows(command)
    assert len(rows) >= 6
    p = _subparser(command)
    known = p._option_string_actions
    for names, status in rows:
        for name in names:
            assert name in known, f"{command} {name}: listed as {status}, unknown to the parser"
            refused = isinstance(known[name], _Refuse)
            assert refused == (status == "refused"), f"{command} {name} is not {status}"
    listed = {n for names, _ in rows for n in names}
    for names, _, _ in REFUSED[command]:
        assert set(names) <= listed, f"{command} refuses {names} without a row in docs/run.md"


@pytest.mark.parametrize("command", COMMANDS)
def test_refused_flags_are_named_with_a_hint(command: str) -> None:
    main_parser = build_parser()
    for names, takes_value, _ in REFUSED[command]:
        argv = [command, names[-1], *(["x"] if takes_value else []), "IMG"]
        with pytest.raises(UsageError) as info:
            main_parser.parse_args(argv)
        assert names[-1] in info.value.message
        assert info.value.hint == f"see 'manyarch {command} --help' for the flags it takes"
        assert info.value.exit_status == (125 if command == "run" else None)
