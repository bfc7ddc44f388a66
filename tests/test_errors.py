"""The error tree: drawn whole in errors.py's docstring, exported whole by the package,
and causes kept (``raise ... from e``) so that ``--debug`` shows them."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import manyarch
from manyarch import errors

SRC = Path(errors.__file__).parent


def _tree() -> dict[str, type[errors.ManyarchError]]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.ManyarchError)
    }


def test_the_docstring_draws_every_error_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    drawn = {
        m.group(2): len(m.group(1)) for m in re.finditer(r"^(\s*[│ ]*[├└]── )(\w+)", doc, re.M)
    }
    for name, cls in _tree().items():
        if cls is errors.ManyarchError:
            assert name in doc
            continue
        assert name in drawn, f"{name} is missing from the tree in errors.py"
        parent = cls.__bases__[0].__name__
        if parent != "ManyarchError":
            assert drawn[name] > drawn[parent], f"{name} is not drawn under {parent}"


def test_the_package_exports_the_whole_tree() -> None:
    assert set(_tree()) <= set(manyarch.__all__)
    for name in manyarch.__all__:
        assert getattr(manyarch, name) is not None


def test_causes_are_chained() -> None:
    # `from None` hides the cause from --debug: only where a comment says why
    hidden = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Raise) and isinstance(node.cause, ast.Constant):
                before = "\n".join(lines[max(0, node.lineno - 4) : node.lineno])
                if "not chained" not in before:
                    hidden.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert hidden == []


def test_a_failed_step_is_an_error_with_fields() -> None:
    e = errors.StepFailed(
        "exited with code 2",
        file="ctx/Dockerfile",
        line=7,
        platform="linux/arm64",
        step="RUN make",
        exit_code=2,
        output=["cc: error"],
    )
    assert isinstance(e, errors.BuildError)
    assert e.message == "ctx/Dockerfile:7: RUN make: exited with code 2"
    assert (e.file, e.line, e.platform, e.step, e.exit_code, e.output) == (
        "ctx/Dockerfile", 7, "linux/arm64", "RUN make", 2, ("cc: error",),
    )  # fmt: skip
