"""Go's text/template as docker's --format uses it: the common templates, Go's printing."""

from __future__ import annotations

from typing import Any

import pytest

from manyarch.gotemplate import TemplateError, render, render_rows, tabwrite

DATA: dict[str, Any] = {
    "ID": "abc123",
    "Names": "web",
    "State": {"Status": "running", "ExitCode": 0, "Running": True, "Health": None},
    "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
    "Args": ["-c", "echo hi"],
    "Labels": {"b": "2", "a": "1"},
    "Count": 3,
    "Empty": [],
    "Image": lambda platform="": f"config of {platform or 'all'}",
}


@pytest.mark.parametrize(
    ("fmt", "out"),
    [
        ("{{.ID}}", "abc123"),
        ("{{ .Names }}", "web"),
        ("{{.State.Status}} {{.State.ExitCode}}", "running 0"),
        ("{{.State.Running}}", "true"),
        ("{{.Missing}}", "<no value>"),
        ("{{.State.Health}}", "<no value>"),
        ("{{json .State}}", '{"Status":"running","ExitCode":0,"Running":true,"Health":null}'),
        ("{{json .Ports}}", '{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}'),
        ("{{.Args}}", "[-c echo hi]"),
        ("{{.Labels}}", "map[a:1 b:2]"),
        ('{{join .Args ","}}', "-c,echo hi"),
        ("{{.Names | upper}}", "WEB"),
        ("{{upper .Names}}", "WEB"),
        ('{{index .Labels "a"}}', "1"),
        ('{{(index (index .Ports "80/tcp") 0).HostPort}}', "8080"),
        (
            "{{range $p, $conf := .Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{end}}",
            "80/tcp -> 8080",
        ),
        ("{{range .Args}}[{{.}}]{{end}}", "[-c][echo hi]"),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if .Empty}}a{{else if .Count}}b{{else}}c{{end}}", "b"),
        ("{{if .Empty}}a{{else if .Empty}}b{{else}}c{{end}}", "c"),
        ("{{with .State}}{{.Status}}{{end}}", "running"),
        ("{{len .Args}}", "2"),
        ('{{printf "%s:%d" .Names .Count}}', "web:3"),
        ("{{println .Names}}", "web\n"),
        ('{{.Image "linux/arm64"}}', "config of linux/arm64"),
        ('{{json (.Image "linux/arm64")}}', '"config of linux/arm64"'),
        ("a {{- .Names -}} b", "awebb"),
        ("{{/* a comment */}}x", "x"),
        ('{{eq .Names "web"}}', "true"),
        ("{{$.ID}}", "abc123"),
    ],
)
def test_templates_render_as_go_renders_them(fmt: str, out: str) -> None:
    assert render(fmt, DATA) == out


@pytest.mark.parametrize("fmt", ["{{.ID", "{{if .ID}}x", "{{end}}", "{{nosuch .ID}}", "{{.ID | }}"])
def test_bad_templates_are_usage_errors(fmt: str) -> None:
    with pytest.raises((TemplateError,)):
        render(fmt, DATA)


def test_table_has_a_header_and_aligned_columns() -> None:
    rows = [{"ID": "a1", "Names": "web"}, {"ID": "b22222222222", "Names": "db"}]
    text = render_rows("table {{.ID}}\\t{{.Names}}", rows, {"ID": "CONTAINER ID", "Names": "NAMES"})
    assert text.splitlines() == [
        "CONTAINER ID   NAMES",
        "a1             web",
        "b22222222222   db",
    ]
    assert render_rows("{{.ID}}", rows, {}) == "a1\nb22222222222\n"
    assert render_rows("{{json .}}", rows[:1], {}) == '{"ID":"a1","Names":"web"}\n'


def test_tabwriter_minimum_width_and_padding() -> None:
    assert tabwrite(["a\tb", "ccc\td"]) == "a         b\nccc       d\n"
