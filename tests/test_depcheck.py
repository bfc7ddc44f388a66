"""Keep the direction of imports honest (like go-containerregistry's depcheck_test.go)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "manyarch"

# package -> manyarch packages it may import (besides itself)
ALLOWED = {
    "oci": {"errors"},
    "dockerfile": {"errors", "oci"},
    "layers": {"errors", "oci"},
    "layout": {"errors", "oci", "layers"},
    "registry": {"errors", "oci", "__init__"},
    "sandbox": {"errors", "oci"},
    "images": {"errors", "oci", "layout", "registry", "store"},
    "store": {"layout"},
    "procs": set(),
    "builders": {"errors"},
    "imagebuild": {
        "__init__",
        "errors",
        "oci",
        "dockerfile",
        "layers",
        "layout",
        "registry",
        "sandbox",
        "images",
        "inspect",
        "store",
        "rootfs",
        "procs",
    },
    "rootfs": {"errors", "oci", "layers", "layout", "store", "procs"},
    "run": {
        "__init__",
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
    },
}
# third-party modules the pure packages may use
PURE_THIRD_PARTY = {"oci": set(), "dockerfile": {"dockerfile"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_direction(package: str) -> None:
    pkg_dir = SRC / package
    paths = list(pkg_dir.rglob("*.py")) if pkg_dir.is_dir() else [SRC / f"{package}.py"]
    for path in paths:
        for mod in _imports(path):
            if mod == "manyarch" or mod.startswith("manyarch."):
                parts = mod.split(".")
                top = parts[1] if len(parts) > 1 else "__init__"
                if top != package:
                    assert top in ALLOWED[package], f"{path}: {package}/ must not import {mod}"


@pytest.mark.parametrize("package", sorted(PURE_THIRD_PARTY))
def test_pure_packages_use_only_stdlib(package: str) -> None:
    import sys

    pkg_dir = SRC / package
    if not pkg_dir.exists():
        pytest.skip(f"{package} not written yet")
    for path in pkg_dir.rglob("*.py"):
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top in ("manyarch", "__future__") or top in sys.stdlib_module_names:
                continue
            assert top in PURE_THIRD_PARTY[package], f"{path} imports {mod}"


def test_nothing_below_cli_prints() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("cli", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit", "input"), f"{rel}:{node.lineno}"
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "argv"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                raise AssertionError(f"{rel}:{node.lineno} reads sys.argv")


def test_nothing_imports_the_cli() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("cli", "__main__.py"):
            continue
        for mod in _imports(path):
            assert not mod.startswith("manyarch.cli"), f"{rel} imports {mod}"
