"""COPY --from with a wildcard resolves inside the source root, never on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manyarch import dockerfile as df
from manyarch.errors import BuildError
from manyarch.imagebuild.copying import expand_sources
from manyarch.oci.platform import Platform
from tests.imagebuild.build_helpers import make_context, run_build


def _step(*sources: str) -> df.CopyStep:
    return df.CopyStep(line=3, text="COPY", sources=sources, dest="/dst/", from_="stage:0")


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory standing for the host's /etc: nothing in it may be copied."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "shadow").write_text("root:secret\n")
    return host


@pytest.mark.parametrize(
    "link, pattern",
    [
        ("src", "/src/*"),
        ("src", "/src/sha*"),
        ("src", "/s?c/*"),
        ("deep/src", "/deep/src/*"),
    ],
)
def test_wildcard_through_absolute_symlink_stays_in_root(
    tmp_path: Path, host_dir: Path, link: str, pattern: str
) -> None:
    root = tmp_path / "root"
    (root / os.path.dirname(link)).mkdir(parents=True, exist_ok=True)
    os.symlink(str(host_dir), root / link)  # "/src -> /etc" as an image would plant it
    (root / str(host_dir).lstrip("/")).mkdir(parents=True)
    (root / str(host_dir).lstrip("/") / "shadow").write_text("the stage's own file\n")
    found = expand_sources(root, _step(pattern), None)
    assert found, "the stage's own file matches"
    for path, _ in found:
        assert root in path.parents, f"{path} is outside the stage's root"
        assert path.read_text() == "the stage's own file\n"


def test_wildcard_through_relative_symlink_stays_in_root(tmp_path: Path, host_dir: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    depth = len(root.parts) - 1
    os.symlink("../" * depth + str(host_dir).lstrip("/"), root / "src")
    with pytest.raises(BuildError, match="no source files"):
        expand_sources(root, _step("/src/*"), None)


def test_wildcard_in_root_matches_as_glob(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "app" / "lib").mkdir(parents=True)
    for name in ("a.py", "b.py", ".hidden.py", "c.txt"):
        (root / "app" / "lib" / name).write_text(name)
    os.symlink("/app/lib", root / "link")
    found = expand_sources(root, _step("/link/*.py", "/app/*/c.*"), None)
    # * matches a leading dot, as Go's filepath.Match (BuildKit's testCopyWildcards)
    rels = ["link/.hidden.py", "link/a.py", "link/b.py", "app/lib/c.txt"]
    assert [rel for _, rel in found] == rels
    assert dict((rel, p) for p, rel in found)["link/a.py"] == root / "app" / "lib" / "a.py"


def test_build_never_copies_a_host_file_through_a_planted_link(tmp_path: Path) -> None:
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "hostsecret").write_text("host secret\n")
    ctx = make_context(
        tmp_path,
        "FROM scratch AS s\nCOPY tree/ /\nCOPY own /" + str(host).lstrip("/") + "/\n"
        "FROM scratch\nCOPY --from=s /src/host* /dst/\n",
        {"own/hostsecret-of-stage": "the stage's file\n"},
    )
    # the link is planted in the stage as a link inside a copied tree (a source that is
    # itself a link is followed, in the context)
    (ctx / "tree").mkdir()
    os.symlink(str(host), ctx / "tree" / "src")
    built = run_build(ctx, "scratch", (Platform.parse("linux/amd64"),))
    files = built.layer("linux/amd64", -1)
    contents = {name: data for name, (_, data) in files.items() if data is not None}
    assert contents == {"dst/hostsecret-of-stage": b"the stage's file\n"}
