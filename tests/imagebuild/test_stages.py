"""Lazy rootfs, overlay views and reproducible-by-default builds, on the tiny base."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyarch.errors import BuildError
from manyarch.imagebuild.cache import build_hooks
from manyarch.imagebuild.options import StepContext
from manyarch.oci.platform import Platform
from manyarch.rootfs import is_mountpoint
from manyarch.store import open_store
from tests.helpers.tiny_base import EPOCH, TinyBase, tiny_base
from tests.imagebuild.build_helpers import BOTH, Built, index_of, make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)

APP_LAST = """\
ARG BASE
FROM $BASE
WORKDIR /srv
COPY requirements.txt .
RUN echo "deps for $(cat requirements.txt)" > /srv/deps
COPY app/ app/
"""


@pytest.fixture(autouse=True)
def isolated(
    isolated_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A store and work dir of the test's own (conftest); no mount may outlive a build."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    yield isolated_build
    assert _mounts_under(tmp_path) == []


def _mounts_under(path: Path) -> list[str]:
    """Mount points under ``path``, from /proc/self/mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4]
        if mountpoint.startswith(str(path)):
            out.append(mountpoint)
    return out


def cached(ctx: Path, base: str, platforms: tuple[Platform, ...] = BOTH, **kw: object) -> Built:
    """A build with the build cache (no native pip: the tiny base has no python)."""
    hooks = build_hooks(open_store(), native_pip=False)
    return run_build(
        ctx, base, platforms, interceptors=hooks.interceptors, observers=hooks.observers, **kw
    )


def layers(built: Built) -> dict[str, list[str]]:
    """Layer digests per platform."""
    return {
        str(d.platform): [str(layer.digest) for layer in built.manifest(str(d.platform)).layers]
        for d in built.result.manifests
    }


def test_rebuild_after_an_app_edit_unpacks_nothing_and_matches_a_cold_build(
    tmp_path: Path, tiny_base: TinyBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"requirements.txt": "one\n", "app/main.py": "print(1)\n", "app/sub/x.txt": "x"}
    ctx = make_context(tmp_path, APP_LAST, files)
    first = cached(ctx, tiny_base.ref)
    assert first.result.rootfs_work  # the RUN needed a rootfs: the base was unpacked
    (ctx / "app" / "main.py").write_text("print(2)\n")
    again = cached(ctx, tiny_base.ref)
    assert again.result.rootfs_work == ()
    assert [e.status for e in again.events if e.text.startswith("RUN")].count("cached") == 2
    assert again.layer("linux/arm64", -1)["srv/app/main.py"][1] == b"print(2)\n"
    # the layers written without a rootfs are the ones a cold build writes in one
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "cold-store"))
    cold = run_build(ctx, tiny_base.ref)
    assert cold.result.rootfs_work
    assert layers(again) == layers(cold)
    assert layers(again)["linux/amd64"][-1] == layers(again)["linux/arm64"][-1]


def test_views_are_overlays_and_are_unmounted_after_success_and_failure(
    tmp_path: Path, tiny_base: TinyBase, isolated: Path
) -> None:
    seen: list[bool] = []

    def look(ctx: StepContext) -> None:
        if ctx.step.text.startswith("RUN"):
            seen.append(is_mountpoint(ctx.rootfs))

    ctx = make_context(tmp_path, "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n")
    built = run_build(ctx, tiny_base.ref, AMD64, interceptors=[look])
    assert seen == [True]
    assert set(built.layer("linux/amd64", -1)) == {"hi"}
    assert _mounts_under(tmp_path) == []

    bad = make_context(tmp_path / "bad", "ARG BASE\nFROM $BASE\nRUN touch /x\nRUN exit 3\n")
    with pytest.raises(BuildError):
        run_build(bad, tiny_base.ref)
    assert _mounts_under(tmp_path) == []
    assert list(isolated.iterdir()) == []


def test_reproducible_by_default_without_emulation(tmp_path: Path, tiny_base: TinyBase) -> None:
    df = "ARG BASE\nFROM $BASE\nWORKDIR /srv\nCOPY app/ app/\nENV A=1\n"
    one = run_build(make_context(tmp_path / "one", df, {"app/a.py": "a"}), tiny_base.ref)
    time.sleep(1.1)  # other mtimes for the second context
    two = run_build(make_context(tmp_path / "two", df, {"app/a.py": "a"}), tiny_base.ref)
    assert one.result.descriptor == two.result.descriptor
    assert [str(d.platform) for d in index_of(one).manifests] == ["linux/amd64", "linux/arm64"]
    created = "2023-11-14T22:13:20Z"  # the tiny base's created, the default epoch
    for p in ("linux/amd64", "linux/arm64"):
        config = one.config(p)
        assert config.created == created
        assert {h.created for h in config.history[1:]} == {created}
        assert {m.mtime for m, _ in one.layer(p, -1).values()} == {EPOCH}


def test_emulated_run_gets_the_wall_clock_but_clamped_layers(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    df = "ARG BASE\nFROM $BASE\nRUN echo $SOURCE_DATE_EPOCH > /sde\n"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    built = run_build(make_context(tmp_path, df), tiny_base.ref)
    native, emulated = built.config("linux/amd64"), built.config("linux/arm64")
    assert native.created == "2023-11-14T22:13:20Z"
    assert emulated.created is not None and emulated.created >= started
    assert emulated.history[-1].created == emulated.created
    for p in ("linux/amd64", "linux/arm64"):
        entries = built.layer(p, -1)
        # no bare etc/ from the sandbox's mount points, mtimes clamped, the epoch visible
        assert set(entries) == {"sde"}
        assert entries["sde"][0].mtime == EPOCH
        assert entries["sde"][1] == f"{EPOCH}\n".encode()


def test_source_date_epoch_wins_over_the_default(tmp_path: Path, tiny_base: TinyBase) -> None:
    df = "ARG BASE\nFROM $BASE\nRUN echo hi > /hi\n"
    built = run_build(make_context(tmp_path, df), tiny_base.ref, epoch=1800000000)
    for p in ("linux/amd64", "linux/arm64"):
        assert built.config(p).created == "2027-01-15T08:00:00Z"


def test_a_file_copied_into_an_existing_directory_needs_no_rootfs(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    # COPY requirements.txt /srv: /srv is a directory of the image, the file lands in it;
    # written in a sparse tree, the layer is the one a rootfs gives
    text = "ARG BASE\nFROM $BASE\nWORKDIR /srv\nCOPY requirements.txt /srv\n"
    ctx = make_context(tmp_path, text, {"requirements.txt": "idna\n"})
    sparse = run_build(ctx, tiny_base.ref, AMD64)
    assert sparse.result.rootfs_work == ()
    assert "srv/requirements.txt" in sparse.layer("linux/amd64", -1)
    # the same COPY after a RUN (the rootfs made): the same layer
    made = make_context(
        tmp_path / "made", text.replace("WORKDIR /srv\n", "WORKDIR /srv\nRUN true\n"),
        {"requirements.txt": "idna\n"},
    )  # fmt: skip
    full = run_build(made, tiny_base.ref, AMD64)
    assert full.result.rootfs_work != ()
    assert layers(full)["linux/amd64"][-1] == layers(sparse)["linux/amd64"][-1]


@pytest.mark.parametrize(
    ("files", "sparse"),
    [
        # over a file and into a directory of earlier COPYs, and new files
        ({"requirements.txt": "idna==3.10\n", "sub/y": "y\n", "new.txt": "n\n"}, True),
        # a directory where the image has a file: the rootfs (the file is replaced)
        ({"requirements.txt": "idna\n", "sub/y": "y\n", "thing/z": "z\n"}, False),
    ],
)
def test_a_directory_copied_into_an_existing_one_gives_the_rootfs_layer(
    tmp_path: Path, tiny_base: TinyBase, files: dict[str, str], sparse: bool
) -> None:
    # the common "COPY requirements.txt ." ... "COPY . ." after WORKDIR: merged into the
    # image's directory in a sparse tree when every path the COPY writes is new or of the
    # same kind (it ran on the whole rootfs: 2.4 s per platform for a small app)
    text = (
        "ARG BASE\nFROM $BASE\nWORKDIR /srv\nCOPY requirements.txt /srv\n"
        "COPY sub /srv/sub\nCOPY thing /srv/thing\nCOPY app/ /srv\n"
    )
    context = {"requirements.txt": "idna\n", "sub/x": "x\n", "thing": "a file\n"}
    context.update({f"app/{rel}": data for rel, data in files.items()})
    merged = run_build(make_context(tmp_path / "a", text, context), tiny_base.ref, AMD64)
    assert (merged.result.rootfs_work == ()) is sparse
    made = text.replace("WORKDIR /srv\n", "WORKDIR /srv\nRUN true\n")
    full = run_build(make_context(tmp_path / "made", made, context), tiny_base.ref, AMD64)
    assert full.result.rootfs_work != ()
    assert layers(full)["linux/amd64"][-1] == layers(merged)["linux/amd64"][-1]
    top = merged.layer("linux/amd64", -1)
    assert top["srv/requirements.txt"][1] == files["requirements.txt"].encode()
    assert "srv/sub/y" in top and "srv/sub/x" not in top  # the earlier file stays below
