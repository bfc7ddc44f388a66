"""Keep the house honest: which module may import which (go-containerregistry's
``depcheck.AssertOnlyDependencies``), no import cycle, and nothing below ``cli/``
that prints, writes to the terminal or exits.

Every import is resolved: absolute (``from manyarch import build`` names the
module ``manyarch.build`` when it is one), relative, and imports inside
functions. A unit is a top-level module or package of ``manyarch``; a unit
may import the units and the third-party distributions listed for it, and
the standard library. A unit that is not listed fails.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "manyarch"

_BASE = {"errors", "_version"}
#: unit -> the manyarch units it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "errors": set(),
    "units": set(),
    "gotemplate": {"errors"},
    "procs": set(),
    "oci": {"errors"},
    "dockerfile": {"errors", "oci"},
    "layers": {"errors", "oci"},
    "layout": {"errors", "oci", "layers"},
    "registry": {*_BASE, "oci"},
    "sandbox": {"errors", "oci"},
    # dpkg runs sandboxed: the host's unpacking, the image's configuring
    "debian": {"errors", "oci", "sandbox"},
    "bytecode": {"errors"},
    "store": {"layout"},
    "builders": {"errors"},
    "images": {"errors", "oci", "layout", "registry", "store"},
    "inspect": {"errors", "oci", "images", "units", "gotemplate"},
    "rootfs": {"errors", "oci", "layers", "layout", "store", "procs"},
    "imagebuild": {
        *_BASE,
        "oci",
        "dockerfile",
        "layers",
        "layout",
        "registry",
        "sandbox",
        "debian",
        "bytecode",
        "images",
        "store",
        "rootfs",
        "procs",
        "units",
    },
    "baseimage": {*_BASE, "oci", "layers", "layout", "debian", "bytecode", "units", "sandbox"},
    # attestations read what an image holds from its layers (dpkg's database: debian)
    "attest": {*_BASE, "oci", "layers", "layout", "debian"},
    # BuildKit's image exporter: media types, compression, annotations, attestations
    "export": {"errors", "oci", "layers", "layout", "attest", "publish"},
    # the Dockerfile frontend's subrequests (--check, --call outline|targets): pure
    "subrequests": {"errors", "oci", "dockerfile"},
    "run": {
        "errors",
        "oci",
        "layers",
        "layout",
        "registry",
        "sandbox",
        "images",
        "store",
        "rootfs",
        "procs",
        "units",
        "gotemplate",
    },
    # the public floor: the session maps every call onto the library below it;
    # config finds what the session is not told (buildkitd.toml, daemon.json, builders)
    "config": {"errors", "builders", "registry"},
    "publish": {"errors", "oci", "layout", "images", "registry"},
    "session": {
        "errors",
        "config",
        "builders",
        "oci",
        "layout",
        "registry",
        "store",
        "rootfs",
        "images",
        "inspect",
        "publish",
        "imagebuild",
        "baseimage",
        "run",
        "attest",
        "export",
        "subrequests",
        "gotemplate",
        "units",
    },
    # the package exports the session, the error tree and the values calls return
    "__init__": {
        "_version",
        "errors",
        "session",
        "oci",
        "registry",
        "images",
        "inspect",
        "publish",
        "imagebuild",
        "run",
    },
    # commands map flags onto the session; they name the library's values and defaults
    "cli": {
        *_BASE,
        "session",
        "config",
        "publish",
        "builders",
        "oci",
        "units",
        "images",
        "sandbox",
        "imagebuild",
        "baseimage",
        "run",
        "subrequests",
        "attest",
        "export",
        "gotemplate",
    },
    "__main__": {"cli"},
}
#: unit -> the third-party distributions it may import (the standard library always)
THIRD_PARTY: dict[str, set[str]] = {
    "dockerfile": {"dockerfile"},
    "layers": {"isal", "zstandard"},
    "debian": {"zstandard"},
    "registry": {"httpx", "httpcore"},
    "imagebuild": {"packaging", "uv", "httpx"},
    "baseimage": {"httpx"},
    "cli": {"rich"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``, resolved to a full name."""
    return imports_of(path.read_text(), _module_name(path), package=path.name == "__init__.py")


def imports_of(text: str, me: str, *, package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in the source of module ``me``."""
    package_name = me if package else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_name
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                yield node.lineno, sub if sub in MODULES else target


def _internal(module: str) -> str | None:
    """The manyarch module an import names (a package's ``__init__`` for a name in it)."""
    if module != "manyarch" and not module.startswith("manyarch."):
        return None
    while module not in MODULES and "." in module:
        module = module.rpartition(".")[0]
    return module


def test_every_unit_is_listed() -> None:
    units = {_unit(m) for m in MODULES}
    assert units - set(ALLOWED) == set(), "a new unit needs its line in ALLOWED"
    assert set(ALLOWED) - units == set(), "ALLOWED names a unit that no longer exists"


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_only_allowed_dependencies(unit: str) -> None:
    bad = []
    for name, path in MODULES.items():
        if _unit(name) != unit:
            continue
        for line, mod in imports(path):
            top = mod.split(".")[0]
            internal = _internal(mod)
            if internal is not None:
                other = _unit(internal)
                if other != unit and other not in ALLOWED[unit]:
                    bad.append(f"{path.relative_to(SRC)}:{line} imports {mod}")
            elif top not in (*sys.stdlib_module_names, "__future__", *THIRD_PARTY.get(unit, ())):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {mod} (third party)")
    assert not bad, "\n".join(bad)


def test_the_resolver_sees_every_spelling() -> None:
    # the checks above are only as good as this: absolute, from-package, relative, nested
    text = (
        "from manyarch import cli\n"
        "from . import executor\n"
        "from ..run import container\n"
        "def f():\n"
        "    import manyarch.cli.main\n"
    )
    found = {m for _, m in imports_of(text, "manyarch.imagebuild.probe")}
    assert found == {
        "manyarch.cli",
        "manyarch.imagebuild.executor",
        "manyarch.run.container",
        "manyarch.cli.main",
    }


def test_no_import_cycle() -> None:
    graph = {
        m: {i for _, mod in imports(p) if (i := _internal(mod)) is not None and i != m}
        for m, p in MODULES.items()
    }
    # Tarjan's strongly connected components; any with more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            # a package's __init__ is imported by its own modules' import machinery
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


_STREAMS = {"stdout", "stderr", "stdin", "__stdout__", "__stderr__", "__stdin__", "exit", "argv"}


def _terminal_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("print", "exit", "quit", "input", "breakpoint")
        ):
            yield node.lineno, f"{node.func.id}()"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
            and node.attr in _STREAMS
        ):
            yield node.lineno, f"sys.{node.attr}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
            and node.func.attr in ("write", "_exit", "abort")
        ):
            first = node.args[0] if node.args else None
            if node.func.attr != "write" or (
                isinstance(first, ast.Constant) and first.value in (1, 2)
            ):
                yield node.lineno, f"os.{node.func.attr}"


def test_nothing_below_cli_prints_or_exits() -> None:
    bad = []
    for name, path in MODULES.items():
        if _unit(name) in ("cli", "__main__"):
            continue
        for line, what in _terminal_uses(ast.parse(path.read_text())):
            bad.append(f"{path.relative_to(SRC)}:{line} uses {what}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "code",
    [
        "print('x')",
        "import sys\nsys.exit(1)",
        "import sys\nsys.stderr.write('x')",
        "import os\nos.write(2, b'x')",
        "import os\nos._exit(3)",
        "import sys\nx = sys.argv",
    ],
)
def test_terminal_uses_are_caught(code: str) -> None:
    assert list(_terminal_uses(ast.parse(code)))


def test_nothing_imports_the_cli() -> None:
    for name, path in MODULES.items():
        if _unit(name) in ("cli", "__main__"):
            continue
        for line, mod in imports(path):
            internal = _internal(mod)
            assert internal is None or _unit(internal) != "cli", f"{path}:{line} imports {mod}"


def test_nothing_below_imports_the_session() -> None:
    # the session is the top of the library: only the package's exports and the CLI use it
    for name, path in MODULES.items():
        if _unit(name) in ("cli", "__main__", "__init__", "session"):
            continue
        for line, mod in imports(path):
            internal = _internal(mod)
            assert internal is None or _unit(internal) != "session", f"{path}:{line} imports {mod}"


def _raises_usage_error(tree: ast.AST) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "UsageError":
            yield node.lineno


def test_usage_errors_are_the_clis_alone() -> None:
    # the library raises InvalidArgument (and the rest of the tree); only cli/ speaks
    # of a command line, and so only cli/ names UsageError
    bad = []
    for name, path in MODULES.items():
        if _unit(name) in ("cli", "__main__"):
            continue
        for line in _raises_usage_error(ast.parse(path.read_text())):
            bad.append(f"{path.relative_to(SRC)}:{line} names UsageError")
    assert not bad, "\n".join(bad)
