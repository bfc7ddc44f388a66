"""``--call outline`` and ``--call targets``: what a Dockerfile's targets take and are.

As BuildKit's frontend answers these subrequests (moby/buildkit
``frontend/subrequests/outline``, ``targets``; ``dockerfile2llb/outline.go``):
a target's build args with their defaults and the comment that documents
them (``# NAME description`` just above the ARG), its secrets and ssh
mounts; every stage with its comment, the last one the default. Printed as
buildx prints them (Go's tabwriter), or as their JSON (``format=json``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from manyarch import dockerfile as df
from manyarch.errors import InvalidArgument

_MOUNT_ID = re.compile(r"(?:^|,)id=([^,]+)")


def tabwrite(rows: Sequence[Sequence[str]], padding: int) -> str:
    """Go's ``text/tabwriter`` (minwidth 0, padchar ' '): cells ended by a tab are padded
    to their column's width plus ``padding``; a line's last cell is written as it is."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    out = []
    for row in rows:
        cells = [c.ljust(widths[i] + padding) for i, c in enumerate(row[:-1])]
        out.append("".join(cells) + (row[-1] if row else ""))
    return "\n".join(out) + "\n"


def doc_comment(text: str, line: int, name: str) -> str:
    """The ``# NAME description`` comment right above ``line`` (BuildKit's ``DocComment``)."""
    if not name:
        return ""
    lines = text.splitlines()
    i = line - 2
    comments = []
    while i >= 0 and lines[i].lstrip().startswith("#"):
        comments.append(lines[i].lstrip()[1:].strip())
        i -= 1
    for c in reversed(comments):
        if c.startswith(name + " "):
            return c[len(name) + 1 :]
    return ""


def _stage(parsed: df.Dockerfile, target: str | None) -> df.StageSource:
    if target is None:
        return parsed.stages[-1]
    for s in parsed.stages:
        if s.name == target.lower():
            return s
    raise InvalidArgument(
        f"target stage {target!r} could not be found",
        "stages: " + ", ".join(s.name or str(s.index) for s in parsed.stages),
    )


def _needed(parsed: df.Dockerfile, stage: df.StageSource) -> list[df.StageSource]:
    names = {s.name: s for s in parsed.stages if s.name}
    out: list[df.StageSource] = []

    def visit(s: df.StageSource) -> None:
        if s in out:
            return
        deps = [s.base, *(v for i in s.instructions for k, v in i.flags if k == "from")]
        for d in deps:
            dep = names.get(d.lower()) or (
                parsed.stages[int(d)] if d.isdigit() and int(d) < s.index else None
            )
            if dep is not None:
                visit(dep)
        out.append(s)

    visit(stage)
    return out


def outline(text: str, target: str | None = None, *, file: str = "Dockerfile") -> dict[str, Any]:
    """BuildKit's ``Outline`` of the target (JSON form)."""
    parsed = df.parse(text, file=file)
    stage = _stage(parsed, target)
    stages = _needed(parsed, stage)
    used = {w for s in stages for w in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", s.text)}
    args: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ins in parsed.global_args:
        for item in ins.args:
            key, eq, value = item.partition("=")
            if key in used and key not in seen:
                seen.add(key)
                args.append(_arg(text, ins, key, value if eq else ""))
    secrets: dict[str, bool] = {}
    ssh: dict[str, bool] = {}
    for s in stages:
        for ins in s.instructions:
            if ins.cmd == "ARG":
                for item in ins.args:
                    key, eq, value = item.partition("=")
                    if key not in seen:
                        seen.add(key)
                        args.append(_arg(text, ins, key, value if eq else ""))
            for k, v in ins.flags:
                if k != "mount":
                    continue
                required = "required=true" in v or "required" in v.split(",")
                m = _MOUNT_ID.search(v)
                if "type=secret" in v:
                    name = m.group(1) if m else ""
                    secrets[name] = secrets.get(name, False) or required
                elif "type=ssh" in v:
                    name = m.group(1) if m else "default"
                    ssh[name] = ssh.get(name, False) or required
    out: dict[str, Any] = {}
    if stage.name:
        out["name"] = stage.name
    described = doc_comment(text, stage.line, stage.name or "")
    if described:
        out["description"] = described
    if args:
        out["args"] = args
    if secrets:
        out["secrets"] = [_mount(n, r) for n, r in secrets.items()]
    if ssh:
        out["ssh"] = [_mount(n, r) for n, r in ssh.items()]
    return out


def _arg(text: str, ins: df.Instruction, key: str, value: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": key}
    described = doc_comment(text, ins.line, key)
    if described:
        out["description"] = described
    if value:
        out["value"] = value.strip("\"'")
    out["location"] = _location(ins.line, ins.end_line)
    return out


def _mount(name: str, required: bool) -> dict[str, Any]:
    return {"name": name, **({"required": True} if required else {})}


def _location(start: int, end: int) -> dict[str, Any]:
    return {"ranges": [{"start": {"line": start}, "end": {"line": end}}]}


def print_outline(o: dict[str, Any]) -> str:
    """buildx's text of an outline (``PrintOutline``)."""
    out = ""
    if o.get("name") or o.get("description"):
        rows = [["TARGET:", o.get("name") or "(default)"]]
        if o.get("description"):
            rows.append(["DESCRIPTION:", o["description"]])
        out += tabwrite(rows, 1) + "\n"
    if o.get("args"):
        rows = [["BUILD ARG", "VALUE", "DESCRIPTION"]]
        rows += [[a["name"], a.get("value", ""), a.get("description", "")] for a in o["args"]]
        out += tabwrite(rows, 3) + "\n"
    for key, title in (("secrets", "SECRET"), ("ssh", "SSH")):
        if o.get(key):
            rows = [[title, "REQUIRED"]]
            rows += [[m["name"], "true" if m.get("required") else ""] for m in o[key]]
            out += tabwrite(rows, 3) + "\n"
    return out


def targets(text: str, *, file: str = "Dockerfile") -> dict[str, Any]:
    """BuildKit's ``targets.List`` (JSON form): every stage, the last the default."""
    parsed = df.parse(text, file=file)
    out = []
    for s in parsed.stages:
        t: dict[str, Any] = {}
        if s.name:
            t["name"] = s.name
        if s is parsed.stages[-1]:
            t["default"] = True
        described = doc_comment(text, s.line, s.name or "")
        if described:
            t["description"] = described
        t["base"] = s.base
        if s.platform:
            t["platform"] = s.platform
        t["location"] = _location(s.line, s.line)
        out.append(t)
    return {"targets": out}


def print_targets(listing: dict[str, Any]) -> str:
    """buildx's text of a targets list (``PrintTargets``)."""
    rows = [["TARGET", "DESCRIPTION"]]
    for t in listing["targets"]:
        name = t.get("name", "")
        if not name and t.get("default"):
            name = "(default)"
        elif t.get("default"):
            name = f"{name} (default)"
        rows.append([name, t.get("description", "")])
    return tabwrite(rows, 1)
