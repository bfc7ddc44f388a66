"""Native apt: which lines it takes, and the same layer as the image's own apt under QEMU."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from manyarch.imagebuild.nativeapt.apt import (
    DOCKER_CLEAN,
    check_config,
    has_docker_clean,
    prune_debs,
    remove_lists,
)
from manyarch.imagebuild.nativeapt.command import AptCommand, NativeApt, plan_apt
from manyarch.imagebuild.nativeapt.interceptor import NativeAptInterceptor
from manyarch.imagebuild.nativepip.command import Fallback
from manyarch.oci.platform import Platform
from manyarch.sandbox import emulation
from tests.baseimage.test_baseimage import needs_root
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import Built, make_context, run_build

ARM64 = Platform.parse("linux/arm64")
SH = "/bin/sh"


def _plan(line: str) -> NativeApt | Fallback:
    return plan_apt([SH, "-c", line], True, {})


@pytest.mark.parametrize(
    ("line", "commands"),
    [
        (
            "apt-get update && apt-get install -y --no-install-recommends gcc libpq-dev"
            " && rm -rf /var/lib/apt/lists/*",
            (
                AptCommand("update"),
                AptCommand("install", ("gcc", "libpq-dev"), True),
                AptCommand("rm-lists"),
            ),
        ),
        (
            "apt-get update; DEBIAN_FRONTEND=noninteractive apt-get -qq install -y curl;"
            " apt-get clean",
            (AptCommand("update"), AptCommand("install", ("curl",)), AptCommand("clean")),
        ),
        ("apt-get install --yes tree", (AptCommand("install", ("tree",)),)),
    ],
)
def test_plan_takes_the_common_lines(line: str, commands: tuple[AptCommand, ...]) -> None:
    assert _plan(line) == NativeApt(commands)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("apt-get update", "no apt-get install"),
        ("apt-get install tree", "without -y"),
        ("apt-get install -y tree=2.1.0-1", "apt-get install tree=2.1.0-1"),
        ("apt-get install -y -t bookworm-backports tree", "option -t"),
        ("apt-get upgrade -y", "apt-get upgrade"),
        ("apt-get update && apt-get install -y tree && tree /", "'tree' is not apt-get"),
        ("apt-get install -y tree | cat", "|"),
        ("rm -rf /tmp/* && apt-get install -y tree", "is not rm -rf /var/lib/apt/lists"),
        ("FOO=1 apt-get install -y tree", "FOO=1 before"),
    ],
)
def test_plan_leaves_the_rest_to_qemu(line: str, reason: str) -> None:
    plan = _plan(line)
    assert isinstance(plan, Fallback), plan
    assert reason in plan.reason


def test_check_config_refuses_hooks(tmp_path: Path) -> None:
    parts = tmp_path / "etc/apt/apt.conf.d"
    parts.mkdir(parents=True)
    (parts / "70debconf").write_text(
        '// Pre-configure\nDPkg::Pre-Install-Pkgs {"/usr/sbin/dpkg-preconfigure --apt || true";};\n'
    )
    assert check_config(tmp_path) is None
    (parts / "docker-clean").write_text(
        'DPkg {\n  Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n};\n'
    )
    why = check_config(tmp_path)
    assert why is not None and "docker-clean" in why
    (parts / "docker-clean").write_text(DOCKER_CLEAN_CONF)
    assert check_config(tmp_path) is None and has_docker_clean(tmp_path)


#: debian:SUITE-slim's /etc/apt/apt.conf.d/docker-clean (debuerreotype's), as python:3.X-slim has it
DOCKER_CLEAN_CONF = f"""\
DPkg::Post-Invoke {{ "{DOCKER_CLEAN}"; }};
APT::Update::Post-Invoke {{ "{DOCKER_CLEAN}"; }};

Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def test_remove_lists_and_prune(tmp_path: Path) -> None:
    lists = tmp_path / "var/lib/apt/lists"
    (lists / "partial").mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm_InRelease").write_text("x")
    (lists / ".hidden").write_text("")
    remove_lists(tmp_path)
    assert [p.name for p in lists.iterdir()] == [".hidden"]
    cache = tmp_path / "cache"
    debs = cache / "apt/archives"
    debs.mkdir(parents=True)
    for i in range(3):
        (debs / f"p{i}_1_arm64.deb").write_bytes(b"x" * 100)
    assert prune_debs(cache, keep_bytes=150, all=False) == 200
    assert prune_debs(cache, keep_bytes=None, all=True) == 100
    assert not list(debs.glob("*.deb"))


# -- the same line, natively and under QEMU --------------------------------------------

APT_LINE = """\
ARG BASE
FROM $BASE
RUN apt-get update && apt-get install -y --no-install-recommends tree netcat-openbsd libpq5 \\
    && rm -rf /var/lib/apt/lists/*
RUN tree --version && nc -h 2>&1 | head -1
"""
#: Not compared: logs, backups, apt's own caches and lists, ldconfig's inode cache,
#: and /tmp, where the emulated apt wrote (and removed) its files.
IGNORED = ("var/log/", "var/cache/apt", "var/lib/apt", "var/cache/ldconfig/aux-cache", "tmp")


def _tree(
    built: Built, platform: str, layers: tuple[int, ...] = (0, 1)
) -> dict[str, tuple[object, ...]]:
    """The image's files after the apt line: base layer overlaid by the next ones."""
    out: dict[str, tuple[object, ...]] = {}
    for i in layers:
        for name, (info, data) in built.layer(platform, i).items():
            out[name] = _entry(info, data)
    return {n: e for n, e in out.items() if not n.startswith(IGNORED) and not n.endswith("-old")}


def _entry(info: tarfile.TarInfo, data: bytes | None) -> tuple[object, ...]:
    digest = hashlib.sha256(data).hexdigest() if data is not None else ""
    return (info.type, info.mode, info.uid, info.gid, info.linkname, digest)


@pytest.mark.slow
@needs_root
def test_native_apt_lands_what_the_emulated_apt_does(
    slim_base: PythonBase, tmp_path: Path, isolated_build: Path
) -> None:
    if not emulation.can_run(ARM64) or emulation.runs_natively(ARM64):
        pytest.skip("needs a foreign linux/arm64 through QEMU")
    ctx = make_context(tmp_path, APT_LINE)
    hook = NativeAptInterceptor(tmp_path / "cache")
    native = run_build(ctx, slim_base.ref, (ARM64,), interceptors=[hook])
    assert hook.native == 1, hook.fallbacks
    out = "\n".join(native.output("linux/arm64"))
    assert "native: apt resolved, fetched and unpacked" in out
    assert "emulated (QEMU): maintainer scripts and triggers" in out
    assert "tree v2" in out
    emulated = run_build(ctx, slim_base.ref, (ARM64,))
    assert "tree v2" in "\n".join(emulated.output("linux/arm64"))
    a, b = _tree(native, "linux/arm64"), _tree(emulated, "linux/arm64")
    assert {n: (a.get(n), b.get(n)) for n in a.keys() | b.keys() if a.get(n) != b.get(n)} == {}
    assert a["var/lib/dpkg/status"] == b["var/lib/dpkg/status"]
    assert "usr/bin/tree" in native.layer("linux/arm64", 1)
    # again, with the .debs and the lists of the first build: the same files
    warm = run_build(ctx, slim_base.ref, (ARM64,), interceptors=[hook])
    assert "from the lists of an earlier build" in "\n".join(warm.output("linux/arm64"))
    assert _tree(warm, "linux/arm64") == a


DOCKER_CLEAN_LINE = """\
ARG BASE
FROM $BASE
COPY docker-clean /etc/apt/apt.conf.d/docker-clean
RUN apt-get update && apt-get install -y --no-install-recommends tree
"""


@pytest.mark.slow
@needs_root
def test_native_apt_does_what_docker_clean_asks(
    slim_base: PythonBase, tmp_path: Path, isolated_build: Path
) -> None:
    """With the official images' docker-clean: no .debs nor package caches left, as there."""
    if not emulation.can_run(ARM64) or emulation.runs_natively(ARM64):
        pytest.skip("needs a foreign linux/arm64 through QEMU")
    ctx = make_context(tmp_path, DOCKER_CLEAN_LINE, {"docker-clean": DOCKER_CLEAN_CONF})
    hook = NativeAptInterceptor(tmp_path / "cache")
    native = run_build(ctx, slim_base.ref, (ARM64,), interceptors=[hook])
    assert hook.native == 1, hook.fallbacks
    emulated = run_build(ctx, slim_base.ref, (ARM64,))
    a = _tree(native, "linux/arm64", (0, 1, 2))
    b = _tree(emulated, "linux/arm64", (0, 1, 2))
    assert {n: (a.get(n), b.get(n)) for n in a.keys() | b.keys() if a.get(n) != b.get(n)} == {}
    for built in (native, emulated):
        step = built.layer("linux/arm64", 2)
        assert "usr/bin/tree" in step
        assert not [
            n for n in step if n.startswith("var/cache/apt/") and n.endswith((".deb", ".bin"))
        ]
