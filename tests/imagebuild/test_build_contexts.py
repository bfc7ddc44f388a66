"""``--build-context NAME=VALUE`` as BuildKit's named contexts (frontend/dockerfile/
dockerfile_namedcontext_test.go): a directory or an image standing for a name."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.errors import DockerfileError
from manyarch.oci.platform import Platform
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def test_named_contexts_stand_for_stages_and_sources(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testNamedImageContext / testNamedOCILayoutContext (an image replaces the stage of
    # that name: its own FROM is never read), testNamedLocalContext (a directory for
    # COPY --from and RUN --mount from=)
    other = tmp_path / "other"
    other.mkdir()
    (other / "file").write_text("from other\n")
    df = """\
FROM never-resolved.invalid/base AS base
FROM base
COPY --from=src file /copied
RUN --mount=from=src,target=/s cat /s/file /copied && head -n1 /etc/passwd
"""
    contexts = {"base": tiny_base.ref, "src": str(other)}
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64, build_contexts=contexts)
    assert built.output("linux/amd64") == [
        "from other",
        "from other",
        "root:x:0:0:root:/root:/bin/sh",
    ]
    assert built.layer("linux/amd64", -1)["copied"][1] == b"from other\n"
    (tmp_path / "ctx/Dockerfile").write_text("FROM src\n")
    with pytest.raises(DockerfileError, match="local directory as a base"):
        run_build(tmp_path / "ctx", tiny_base.ref, AMD64, build_contexts=contexts)
