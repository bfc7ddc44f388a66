"""The part of Go's ``text/template`` that docker's and buildx's ``--format`` use.

Actions ``{{.Field.Sub}}``, ``{{.}}``, pipelines (``{{.Names | upper}}``),
parenthesised calls, ``if``/``else if``/``else``, ``range`` (with ``$k, $v :=``),
``with``, ``-`` trim markers, string/number/bool literals and docker's
functions (``json``, ``join``, ``split``, ``upper``, ``lower``, ``title``,
``len``, ``index``, ``print``, ``printf``, ``println``, ``truncate``, ``pad``).
Fields are looked up in mappings (a missing key prints ``<no value>``, as Go
does for a map) or as attributes; a callable field takes the arguments that
follow it, as a Go method does (buildx's ``{{json .Image "linux/arm64"}}``).

Values print as Go prints them: lists as ``[a b]``, maps as ``map[k:v]``,
booleans as ``true``/``false``, nil as ``<no value>``. :func:`render_table`
does docker's ``table`` prefix: a header line from the same template, and
columns aligned by Go's tabwriter (minimum width 10, padding 3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from manyarch.errors import InvalidArgument

NO_VALUE = "<no value>"


class TemplateError(InvalidArgument):
    """A template that does not parse or cannot be applied."""


# -- lexing -----------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<field>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z0-9_]+)+|\.|\$[A-Za-z0-9_]*)
    | (?P<decl>:=)
    | (?P<punct>[()|,])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: unexpected {text[pos:]!r} in {{{{{text}}}}}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "field" and out and out[-1] == ("punct", ")") and m.start(kind) == pos:
            kind = "chain"  # (pipeline).Field: a field of the group's value
        out.append((kind, value))
        pos = m.end()
    return out


# -- the tree -----------------------------------------------------------------------


@dataclass
class _Node:
    kind: str  # text, action, if, range, with
    text: str = ""
    pipe: list[list[tuple[str, str]]] = field(default_factory=list)
    decl: list[str] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    alt: list[_Node] = field(default_factory=list)


def _split_pipe(tokens: list[tuple[str, str]]) -> tuple[list[str], list[list[tuple[str, str]]]]:
    decl: list[str] = []
    if any(k == "decl" for k, _ in tokens):
        i = next(i for i, (k, _) in enumerate(tokens) if k == "decl")
        decl = [v for k, v in tokens[:i] if k == "field"]
        tokens = tokens[i + 1 :]
    cmds: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for k, v in tokens:
        if k == "punct" and v == "(":
            depth += 1
        elif k == "punct" and v == ")":
            depth -= 1
        if k == "punct" and v == "|" and depth == 0:
            cmds.append([])
        else:
            cmds[-1].append((k, v))
    return decl, cmds


def parse(text: str) -> list[_Node]:
    """The template's tree."""
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    pos = 0
    pending_trim = False
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if pending_trim:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if chunk:
            stack[-1][1].append(_Node("text", chunk))
        pending_trim = bool(m.group(3))
        pos = m.end()
        body = m.group(2).strip()
        if body.startswith("/*"):
            continue
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word) :].strip()
        if word in ("if", "range", "with"):
            node = _Node(word)
            node.decl, node.pipe = _split_pipe(_tokens(rest))
            stack[-1][1].append(node)
            stack.append((node, node.body))
        elif word == "else":
            owner = stack[-1][0]
            if owner is None:
                raise TemplateError("template: unexpected {{else}}")
            stack.pop()
            if rest.startswith("if "):
                # {{else if}}: an if in the alternative, closed by the same {{end}}
                inner = _Node("if")
                inner.decl, inner.pipe = _split_pipe(_tokens(rest[3:]))
                owner.alt.append(inner)
                stack.append((inner, inner.body))
            else:
                stack.append((owner, owner.alt))
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        elif body:
            node = _Node("action")
            node.decl, node.pipe = _split_pipe(_tokens(body))
            stack[-1][1].append(node)
    tail = text[pos:]
    if "{{" in tail:
        raise TemplateError(f"template: unclosed action in {tail!r}")
    if pending_trim:
        tail = tail.lstrip()
    if tail:
        stack[-1][1].append(_Node("text", tail))
    if len(stack) != 1:
        raise TemplateError("template: unexpected EOF: an {{end}} is missing")
    return root


# -- values as Go prints them ------------------------------------------------------------


def go_str(value: Any) -> str:
    """``fmt.Sprint`` of a value."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value != int(value) or abs(value) >= 1e21 else str(int(value))
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    return bool(value) and value != NO_VALUE


def _to_json(value: Any, *args: Any) -> str:
    # a method given with its arguments (buildx's ``json .Image "linux/arm64"``)
    if callable(value):
        value = value(*args)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def indented_json(value: Any, *args: Any) -> str:
    """buildx's ``json``: indented by two spaces."""
    if callable(value):
        value = value(*args)
    return json.dumps(value, indent=2, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _printf(fmt: str, *args: Any) -> str:
    out, i = [], 0
    parts = re.split(r"(%[-+ #0]*\d*(?:\.\d+)?[vsdqfxXtT%])", fmt)
    for part in parts:
        if not part.startswith("%") or len(part) < 2:
            out.append(part)
            continue
        verb = part[-1]
        if verb == "%":
            out.append("%")
            continue
        arg = args[i] if i < len(args) else None
        i += 1
        spec = part[1:-1]
        if verb == "q":
            out.append(json.dumps(go_str(arg)))
        elif verb in "dfxX" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            out.append(("%" + spec + verb) % arg)
        else:
            out.append(("%" + spec + "s") % go_str(arg))
    return "".join(out)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, (list, tuple)):
            value = value[int(key)]
        else:
            value = _call(value, key) if callable(value) else None
    return value


def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _truncate(text: Any, n: int) -> str:
    s = go_str(text)
    return s[:n] if len(s) > n else s


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _to_json,
    "join": lambda items, sep: sep.join(go_str(i) for i in (items or [])),
    "split": lambda text, sep: go_str(text).split(sep),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "len": lambda v: len(v) if v is not None else 0,
    "index": _index,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _printf,
    "truncate": _truncate,
    "pad": lambda s, before, after: " " * int(before) + go_str(s) + " " * int(after),
    "not": lambda v: not _truthy(v),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1] if a else None),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1] if a else None),
}


# -- evaluation ---------------------------------------------------------------------------


class _Scope:
    def __init__(
        self, dot: Any, root: Any, names: dict[str, Any], funcs: Mapping[str, Callable[..., Any]]
    ) -> None:
        self.dot, self.root, self.names, self.funcs = dot, root, names, funcs


def _field(value: Any, name: str) -> Any:
    # a map's missing key is nil (Go prints <no value>); a struct's missing field an error
    if isinstance(value, Mapping):
        return value.get(name)
    if value is None or isinstance(value, (str, int, float, list, tuple)):
        return None
    if name.startswith("_") or not hasattr(value, name):
        raise TemplateError(
            f"template: can't evaluate field {name} in type {type(value).__name__.lstrip('_')}"
        )
    return getattr(value, name)


def _lookup(path: str, scope: _Scope) -> Any:
    if path == ".":
        return scope.dot
    if path.startswith("$"):
        var, _, rest = path.partition(".")
        if var == "$":
            value = scope.root
        elif var in scope.names:
            value = scope.names[var]
        else:
            raise TemplateError(f"template: undefined variable {var!r}")
        names = rest.split(".") if rest else []
    else:
        value, names = scope.dot, path[1:].split(".")
    for n in names:
        value = _field(value, n)
    return value


def _eval_cmd(cmd: list[tuple[str, str]], scope: _Scope, piped: tuple[Any, ...]) -> Any:
    args: list[Any] = []
    i = 0
    while i < len(cmd):
        kind, val = cmd[i]
        if kind == "punct" and val == "(":
            depth, j = 1, i + 1
            while j < len(cmd) and depth:
                if cmd[j] == ("punct", "("):
                    depth += 1
                elif cmd[j] == ("punct", ")"):
                    depth -= 1
                j += 1
            _, inner = _split_pipe(cmd[i + 1 : j - 1])
            value = _eval_pipe(inner, scope)
            while j < len(cmd) and cmd[j][0] == "chain":
                for name in cmd[j][1].strip(".").split("."):
                    value = _field(value, name)
                j += 1
            args.append(value)
            i = j
            continue
        if kind == "str":
            args.append(json.loads(val))
        elif kind == "raw":
            args.append(val[1:-1])
        elif kind == "num":
            args.append(float(val) if "." in val else int(val))
        elif kind == "field":
            args.append(("field", val))
        elif kind == "ident":
            if val in ("true", "false"):
                args.append(val == "true")
            elif val == "nil":
                args.append(None)
            else:
                args.append(("func", val))
        i += 1
    if not args:
        raise TemplateError("template: empty command")
    head, rest = args[0], [_value(a, scope) for a in args[1:]] + list(piped)
    if isinstance(head, tuple) and head[0] == "func":
        fn = scope.funcs.get(head[1])
        if fn is None:
            raise TemplateError(f'template: function "{head[1]}" not defined')
        try:
            return fn(*rest)
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise TemplateError(f"template: error calling {head[1]}: {e}") from e
    value = _value(head, scope)
    if callable(value):
        return value(*rest)
    if rest:
        raise TemplateError("template: can't give arguments to a non-function")
    return value


def _value(arg: Any, scope: _Scope) -> Any:
    if isinstance(arg, tuple) and arg and arg[0] == "field":
        return _lookup(arg[1], scope)
    if isinstance(arg, tuple) and arg and arg[0] == "func":
        fn = scope.funcs.get(arg[1])
        if fn is None:
            raise TemplateError(f'template: function "{arg[1]}" not defined')
        return fn()
    return arg


def _eval_pipe(cmds: list[list[tuple[str, str]]], scope: _Scope) -> Any:
    value: Any = None
    for n, cmd in enumerate(cmds):
        value = _eval_cmd(cmd, scope, (value,) if n else ())
    return value


def _run(nodes: Sequence[_Node], scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "action":
            value = _eval_pipe(node.pipe, scope)
            if node.decl:
                scope.names[node.decl[0]] = value
            else:
                out.append(go_str(value))
        elif node.kind in ("if", "with"):
            value = _eval_pipe(node.pipe, scope)
            if _truthy(value):
                dot = value if node.kind == "with" else scope.dot
                inner = _Scope(dot, scope.root, scope.names, scope.funcs)
                _run(node.body, inner, out)
            else:
                _run(node.alt, scope, out)
        elif node.kind == "range":
            value = _eval_pipe(node.pipe, scope)
            items: list[tuple[Any, Any]]
            if isinstance(value, Mapping):
                items = [(k, value[k]) for k in sorted(value)]
            elif isinstance(value, (list, tuple)):
                items = list(enumerate(value))
            else:
                items = []
            if not items:
                _run(node.alt, scope, out)
            for k, v in items:
                names = dict(scope.names)
                if len(node.decl) == 2:
                    names[node.decl[0]], names[node.decl[1]] = k, v
                elif len(node.decl) == 1:
                    names[node.decl[0]] = v
                _run(node.body, _Scope(v, scope.root, names, scope.funcs), out)


def unescape(fmt: str) -> str:
    """docker turns ``\\t`` and ``\\n`` typed in a --format into tabs and newlines."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render(fmt: str, data: Any, funcs: Mapping[str, Callable[..., Any]] | None = None) -> str:
    """Apply the template ``fmt`` to ``data`` (``funcs``: functions over docker's)."""
    out: list[str] = []
    _run(parse(fmt), _Scope(data, data, {}, {**FUNCS, **(funcs or {})}), out)
    return "".join(out)


def tabwrite(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter as docker sets it up: tab-separated cells become aligned columns."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])] + [r[-1]]
        out.append("".join(cells))
    return "".join(line + "\n" for line in out)


def is_table(fmt: str) -> bool:
    """Whether the format asks for docker's table (``table ...``)."""
    return fmt.startswith("table")


def render_rows(fmt: str, rows: Sequence[Any], headers: Mapping[str, str]) -> str:
    """docker's --format over a list: a line per row, or with ``table`` aligned columns
    under a header made by rendering the same template on the column names."""
    fmt = unescape(fmt)
    if not is_table(fmt):
        return "".join(render(fmt, r) + "\n" for r in rows)
    body = fmt[len("table") :].lstrip(" ")
    if not body:
        return ""
    head = render(body, _Headers(headers))
    lines = [head, *(render(body, r) for r in rows)]
    text = tabwrite([ln for chunk in lines for ln in chunk.split("\n")])
    return text


class _Headers(dict[str, str]):
    """A row whose fields are the column names (unknown ones upper-cased, as docker)."""

    def get(self, key: str, default: Any = None) -> str:
        return dict.get(self, key) or key.upper()
