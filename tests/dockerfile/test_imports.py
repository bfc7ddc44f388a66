"""The frontend stays pure: it imports the standard library, the parser, errors and oci only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import manyarch.dockerfile

ALLOWED = {"dockerfile", "manyarch.errors", "manyarch.oci", "manyarch.dockerfile"}
FORBIDDEN_STDLIB = {"os", "subprocess", "socket", "shutil", "pathlib", "io", "urllib", "http"}


def test_imports_stay_pure() -> None:
    root = Path(manyarch.dockerfile.__file__).parent
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__":
                    assert top not in FORBIDDEN_STDLIB, f"{path.name} imports {name}"
                    continue
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED), (
                    f"{path.name} imports {name}"
                )
