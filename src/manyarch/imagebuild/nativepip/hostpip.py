"""The host pip, patched to see the target (run in a child process: pip keeps global state)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manyarch.imagebuild.nativepip.target import TargetFacts


def runner(argv: Sequence[str]) -> int:
    """The host side, a child process (pip keeps global state and is patched here).

    ``resolve FACTS PATHS REPORT PIP-ARGS...`` or ``download FACTS PIP-ARGS...``.
    """
    mode, argv = argv[0], argv[1:]
    facts = TargetFacts.from_json(json.loads(Path(argv[0]).read_text()))
    import pip._internal.metadata as pip_metadata
    import pip._internal.models.target_python as target_python
    import pip._internal.resolution.resolvelib.factory as factory
    import pip._vendor.packaging.markers as markers
    from pip._internal.cli.main import main as pip_main
    from pip._vendor.packaging.tags import Tag

    tags = [Tag(*t.split("-")) for t in facts.tags]
    setattr(target_python, "get_supported", lambda *a, **k: list(tags))  # noqa: B010
    env = dict(facts.markers)
    setattr(markers, "default_environment", lambda: dict(env))  # noqa: B010

    v = facts.version
    if mode == "download":
        return pip_main(["download", "--only-binary=:all:", *argv[1:]])
    paths = json.loads(Path(argv[1]).read_text())
    report = argv[2]

    def environment() -> Any:
        return pip_metadata.get_environment(paths)

    setattr(pip_metadata, "get_default_environment", environment)  # noqa: B010
    setattr(factory, "get_default_environment", environment)  # noqa: B010
    return pip_main(
        [
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            report,
            "--only-binary=:all:",
            "--python-version",
            f"{v[0]}.{v[1]}.{v[2]}",
            *argv[3:],
        ]
    )
