"""manyarch base: Debian packages -> rootfs -> multi-platform image, no emulation.

The fast tests work on synthetic packages built with the real dpkg-deb and
read back with the real dpkg-query. The slow ones build the python base for
linux/amd64 and linux/arm64 once per session (cached across sessions), then run
it: natively and under QEMU, check the dpkg database with dpkg, push it to the
real registry and read it back with skopeo.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import re
import shutil
import ssl
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from manyarch import units
from manyarch.baseimage import finish, mmdebstrap, spdx
from manyarch.baseimage import image as base_image
from manyarch.baseimage import options as base_options
from manyarch.baseimage.image import BaseImage
from manyarch.baseimage.options import BaseOptions
from manyarch.cli.main import main
from manyarch.debian import archs, deb
from manyarch.debian.deb import Package
from manyarch.errors import BuildError, InvalidArgument, InvalidInput, ToolMissing
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import ImageConfig, Index, Manifest
from manyarch.oci.platform import Platform
from manyarch.sandbox import emulation
from tests.helpers.base_fixture import (
    BASE_EPOCH,
    PythonBase,
    base_cache_dir,
    python_base_options,
)
from tests.helpers.registry_server import RegistryServer

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mmdebstrap --mode=root and chroot need root")


# -- options, names, keys ------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "arch"),
    [
        ("linux/amd64", "amd64"),
        ("linux/arm64", "arm64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/arm/v7", "armhf"),
        ("linux/arm/v6", "armel"),
        ("linux/386", "i386"),
        ("linux/ppc64le", "ppc64el"),
        ("linux/s390x", "s390x"),
        ("linux/riscv64", "riscv64"),
    ],
)
def test_debian_arch(platform: str, arch: str) -> None:
    assert archs.debian_arch(Platform.parse(platform)) == arch


@pytest.mark.parametrize("platform", ["windows/amd64", "linux/arm64/v9", "linux/mips"])
def test_debian_arch_unknown(platform: str) -> None:
    with pytest.raises(InvalidInput, match="Debian has no architecture") as e:
        archs.debian_arch(Platform.parse(platform))
    assert e.value.hint and "linux/arm64" in e.value.hint


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"platforms": ()}, InvalidArgument, "no platform"),
        ({"platforms": (AMD64, Platform.parse("linux/amd64"))}, InvalidArgument, "twice"),
        ({"preset": "ruby"}, InvalidArgument, "unknown preset"),
        ({"suite": "book worm"}, InvalidInput, "invalid suite"),
        ({"include": ("Python3",)}, InvalidInput, "invalid Debian package name"),
        ({"include": ("curl;rm",)}, InvalidInput, "invalid Debian package name"),
        ({"mirror": "deb.debian.org/debian"}, InvalidInput, "invalid mirror"),
        ({"mirror": "ftp://deb.debian.org/debian"}, InvalidInput, "invalid mirror"),
        ({"epoch": -1}, InvalidInput, "SOURCE_DATE_EPOCH"),
    ],
)
def test_options_refuse(kw: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"platforms": (AMD64,), **kw}
    with pytest.raises(error, match=match):
        BaseOptions(**args)  # type: ignore[arg-type]


def test_packages_always_include_the_basics(tmp_path: Path) -> None:
    opts = BaseOptions((AMD64,), preset="python", include=("curl", "tzdata"), cache_dir=tmp_path)
    pkgs = opts.packages
    assert list(pkgs) == sorted(set(pkgs))
    for name in (
        *base_options.ALWAYS,
        "python3",
        "python3-pip",
        "python-is-python3",
        "dash",
        "curl",
    ):
        assert name in pkgs


@pytest.mark.parametrize(
    "change",
    [
        {"suite": "trixie"},
        {"mirror": "http://snapshot.debian.org/archive/debian/20250520T000000Z"},
        {"include": ("curl",)},
        {"preset": "python"},
        {"epoch": 1},
    ],
)
def test_cache_key_follows_every_input(tmp_path: Path, change: dict[str, object]) -> None:
    a = BaseOptions((AMD64, ARM64), cache_dir=tmp_path)
    b = BaseOptions(**{"platforms": (AMD64, ARM64), "cache_dir": tmp_path, **change})  # type: ignore[arg-type]
    assert a.cache_key(AMD64) == BaseOptions((AMD64, ARM64), cache_dir=tmp_path).cache_key(AMD64)
    assert a.cache_key(AMD64) != a.cache_key(ARM64)
    assert a.cache_key(AMD64) != b.cache_key(AMD64)
    # Where the cache lives is not an input of the image.
    assert a.cache_key(AMD64) == BaseOptions((AMD64,), cache_dir=tmp_path / "x").cache_key(AMD64)


@pytest.mark.parametrize(
    ("epoch", "text"),
    [(0, "1970-01-01T00:00:00Z"), (1700000000, "2023-11-14T22:13:20Z")],
)
def test_epoch_rfc3339(epoch: int, text: str) -> None:
    assert units.rfc3339(epoch) == text


def test_mmdebstrap_command_has_no_emulation_and_keeps_debs(tmp_path: Path) -> None:
    opts = BaseOptions(
        (ARM64,), include=("curl",), cache_dir=tmp_path, mirror="http://snapshot.debian.org/x"
    )
    cmd = mmdebstrap.mmdebstrap_command(opts, ARM64, tmp_path / "root")
    assert "--variant=extract" in cmd
    assert "--arch=arm64" in cmd
    assert "--skip=cleanup/apt/cache" in cmd
    assert any("Check-Valid-Until" in c for c in cmd)
    assert cmd[-3:] == ["bookworm", str(tmp_path / "root"), "http://snapshot.debian.org/x"]
    include = next(c for c in cmd if c.startswith("--include="))
    assert include.removeprefix("--include=").split(",") == list(opts.packages)


# -- mmdebstrap's errors, as a person reads them ---------------------------------------


@pytest.mark.parametrize(
    ("stderr", "match", "hint"),
    [
        (
            "E: Unable to locate package nosuchpkg\nE: apt download failed\n",
            r"package nosuchpkg not found in bookworm \(arm64\)",
            "packages.debian.org",
        ),
        (
            "E: Package 'foo' has no installation candidate\n",
            "package foo not found",
            "--include",
        ),
        (
            "E: The repository 'http://deb.debian.org/debian nosuch Release' does not have a "
            "Release file.\n",
            "suite 'bookworm' not found",
            "--suite",
        ),
        (
            "E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  "
            "Could not connect to 127.0.0.1:9\n"
            "E: Some index files failed to download.\n",
            "cannot download from mirror",
            "--mirror",
        ),
        ("E: something else entirely\n", "mmdebstrap failed for linux/arm64", "--debug"),
    ],
)
def test_mmdebstrap_errors(tmp_path: Path, stderr: str, match: str, hint: str) -> None:
    opts = BaseOptions((ARM64,), cache_dir=tmp_path)
    err = mmdebstrap._mmdebstrap_error(opts, ARM64, stderr)
    assert isinstance(err, BuildError)
    assert re.search(match, err.message), err.message
    assert err.hint and hint in err.hint


# -- Debian packages, read and recorded ---------------------------------------------


CONTROL = """\
Package: {name}
Version: {version}
Architecture: {arch}
Maintainer: Test <test@example.org>
Multi-Arch: {multiarch}
Source: {name}-src (1.0)
Homepage: https://example.org/{name}
Description: a test package
 with a long description
 .
 over several lines
"""


def make_deb(
    tmp: Path,
    name: str,
    version: str = "1:1.0-1+b1",
    arch: str = "arm64",
    multiarch: str = "foreign",
    conffile: bool = True,
) -> Path:
    """A real .deb, built with dpkg-deb, shipping a binary, a symlink and a conffile."""
    src = tmp / f"src-{name}"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "DEBIAN/control").write_text(
        CONTROL.format(name=name, version=version, arch=arch, multiarch=multiarch)
    )
    (src / "usr/bin").mkdir(parents=True)
    (src / "usr/bin" / name).write_text("#!/bin/sh\necho hi\n")
    (src / "usr/bin" / f"{name}-link").symlink_to(name)
    md5 = hashlib.md5((src / "usr/bin" / name).read_bytes()).hexdigest()
    (src / "DEBIAN/md5sums").write_text(f"{md5}  usr/bin/{name}\n")
    if conffile:
        (src / "etc").mkdir()
        (src / "etc" / f"{name}.conf").write_text("setting = 1\n")
        (src / "DEBIAN/conffiles").write_text(f"/etc/{name}.conf\n")
    out = tmp / f"{name}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(src), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_read_deb(tmp_path: Path) -> None:
    ctl = deb.read_deb(make_deb(tmp_path, "hello"))
    assert ctl.get("Package") == "hello"
    assert ctl.get("version") == "1:1.0-1+b1"
    assert ctl.get("Description").splitlines()[1:] == [
        " with a long description",
        " .",
        " over several lines",
    ]
    assert ctl.conffiles == ("/etc/hello.conf",)
    assert b"usr/bin/hello" in ctl.md5sums
    assert "/." in ctl.files and "/usr/bin/hello" in ctl.files
    assert "/usr/bin/hello-link" in ctl.files and "/etc/hello.conf" in ctl.files
    assert ctl.package == Package(
        "hello",
        "1:1.0-1+b1",
        "arm64",
        "hello-src (1.0)",
        "Test <test@example.org>",
        "https://example.org/hello",
    )
    assert ctl.package.source_name == "hello-src"
    assert ctl.info_name == "hello"


def test_read_deb_refuses_what_is_not_a_deb(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(InvalidInput, match="not a Debian package"):
        deb.read_deb(bad)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("A: 1\nB: two words\n", (("A", "1"), ("B", "two words"))),
        ("A: x\n y\n .\nB:\n", (("A", "x\n y\n ."), ("B", ""))),
        ("\n\nA: 1\n\nB: 2\n", (("A", "1"),)),
    ],
)
def test_parse_control(text: str, fields: tuple[tuple[str, str], ...]) -> None:
    assert deb.parse_control(text) == fields


@pytest.mark.parametrize("text", [" leading continuation\n", "no colon here\n"])
def test_parse_control_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        deb.parse_control(text)


def dpkg_query(root: Path, *args: str) -> str:
    """The real dpkg-query, reading the database written into ``root``."""
    return subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_dpkg_database_is_what_dpkg_reads(tmp_path: Path) -> None:
    root = tmp_path / "root"
    debs = [
        make_deb(tmp_path, "alpha"),
        make_deb(tmp_path, "libbeta1", multiarch="same", conffile=False),
    ]
    for d in debs:
        subprocess.run(["dpkg-deb", "-x", str(d), str(root)], check=True)
    admin = root / "var/lib/dpkg"
    admin.mkdir(parents=True)
    # What mmdebstrap's merged-/usr hook leaves: one package installed by the host's dpkg.
    (admin / "status").write_text(
        "Package: usr-is-merged\nStatus: install ok installed\nVersion: 1\n"
        "Architecture: all\nDescription: fake\n"
    )
    (admin / "status-old").write_text("")
    deb.write_dpkg_database(root, [deb.read_deb(d) for d in debs])

    listing = dpkg_query(
        root, "-W", "-f=${Package} ${Version} ${Architecture} ${db:Status-Abbrev}\n"
    )
    assert listing.splitlines() == [
        "alpha 1:1.0-1+b1 arm64 ii ",
        "libbeta1 1:1.0-1+b1 arm64 ii ",
        "usr-is-merged 1 all ii ",
    ]
    assert "/usr/bin/alpha-link" in dpkg_query(root, "-L", "alpha").split("\n")
    assert (admin / "info/libbeta1:arm64.list").exists()  # Multi-Arch: same
    conffiles = dpkg_query(root, "-W", "-f=${Conffiles}", "alpha").split()
    md5 = hashlib.md5(b"setting = 1\n").hexdigest()
    assert conffiles == ["/etc/alpha.conf", md5]
    assert not (admin / "status-old").exists()
    assert [p.name for p in deb.read_dpkg_status(root)] == ["alpha", "libbeta1", "usr-is-merged"]


# -- what maintainer scripts would have done ----------------------------------------


def test_setup_users(tmp_path: Path) -> None:
    master = tmp_path / "usr/share/base-passwd"
    master.mkdir(parents=True)
    (master / "passwd.master").write_text(
        "root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    )
    (master / "group.master").write_text("root:*:0:\ndaemon:*:1:\n")
    finish.setup_users(tmp_path)
    finish.setup_users(tmp_path)  # twice: still one nonroot
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    group = (tmp_path / "etc/group").read_text().splitlines()
    assert passwd[0] == "root:*:0:0:root:/root:/bin/sh"  # no bash in the image
    assert passwd.count("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin") == 1
    assert group[-1] == "nonroot:x:65532:"
    st = (tmp_path / "home/nonroot").stat()
    assert (st.st_uid, st.st_gid) == (65532, 65532)


def test_setup_ca_certificates(tmp_path: Path) -> None:
    host = Path("/usr/share/ca-certificates/mozilla")
    certs = sorted(host.glob("*.crt"))[:5]
    if not certs:
        pytest.skip("the host has no ca-certificates")
    share = tmp_path / "usr/share/ca-certificates/mozilla"
    share.mkdir(parents=True)
    for c in certs:
        shutil.copy(c, share)
    assert finish.setup_ca_certificates(tmp_path) == len(certs)
    bundle = tmp_path / "etc/ssl/certs/ca-certificates.crt"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(bundle))
    assert ctx.cert_store_stats()["x509_ca"] == len(certs)
    conf = (tmp_path / "etc/ca-certificates.conf").read_text().splitlines()
    assert [c for c in conf if not c.startswith("#")] == [f"mozilla/{c.name}" for c in certs]
    links = sorted((tmp_path / "etc/ssl/certs").iterdir())
    pem = [p for p in links if p.name.endswith(".pem")]
    assert len(pem) == len(certs)
    assert os.readlink(pem[0]).startswith("/usr/share/ca-certificates/mozilla/")
    if shutil.which("openssl"):
        hashed = [p for p in links if re.fullmatch(r"[0-9a-f]{8}\.\d", p.name)]
        assert len(hashed) == len(certs)
        assert all(os.readlink(h).endswith(".pem") for h in hashed)


def test_setup_python_removes_the_pep668_marker(tmp_path: Path) -> None:
    lib = tmp_path / "usr/lib/python3.11"
    lib.mkdir(parents=True)
    (lib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    assert finish.setup_python(tmp_path) == ["/usr/lib/python3.11/EXTERNALLY-MANAGED"]
    assert not (lib / "EXTERNALLY-MANAGED").exists()


# -- SBOM -----------------------------------------------------------------------------


def test_spdx_document(tmp_path: Path) -> None:
    from manyarch.oci.digest import Digest
    from manyarch.oci.manifest import Descriptor

    opts = BaseOptions((AMD64, ARM64), epoch=BASE_EPOCH, cache_dir=tmp_path)
    libc = {
        a: Package("libc6", "2.36-9+deb12u4", a, "glibc", "GNU Libc <x@y>")
        for a in ("amd64", "arm64")
    }
    tz = Package("tzdata", "2024a-0+deb12u1", "all")
    zlib = Package("zlib1g", "1:1.2.13.dfsg-1", "amd64", "zlib")
    fake = Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"x"), 1)
    osr = {"ID": "debian", "VERSION_ID": "12"}
    image = BaseImage(
        opts,
        (
            base_image.PlatformImage(
                AMD64,
                "k1",
                tmp_path,
                fake.with_platform(AMD64),
                (libc["amd64"], tz, zlib),
                osr,
                False,
            ),
            base_image.PlatformImage(
                ARM64, "k2", tmp_path, fake.with_platform(ARM64), (libc["arm64"], tz), osr, False
            ),
        ),
    )
    doc = spdx.spdx_document(image, "localhost:5000/python:3.11")
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert doc["documentNamespace"].endswith(image.digest.hex)
    names = [(p["name"], p["versionInfo"]) for p in doc["packages"]]
    # tzdata (Architecture: all) once, libc6 once per architecture.
    assert names == [
        ("libc6", "2.36-9+deb12u4"),
        ("libc6", "2.36-9+deb12u4"),
        ("tzdata", "2024a-0+deb12u1"),
        ("zlib1g", "1:1.2.13.dfsg-1"),
    ]
    purls = [p["externalRefs"][0]["referenceLocator"] for p in doc["packages"]]
    assert (
        purls[0]
        == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc&distro=debian-12"
    )
    assert (
        purls[3]
        == "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&upstream=zlib&distro=debian-12"
    )
    assert doc["packages"][0]["supplier"] == "Person: GNU Libc (x@y)"
    assert doc["packages"][2]["supplier"] == "NOASSERTION"
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", i) for i in ids)
    assert {r["relatedSpdxElement"] for r in doc["relationships"]} == set(ids)


# -- errors before anything is written -------------------------------------------------


def cache_entries(cache: Path) -> list[str]:
    """Cache entries (64-hex directories) under ``cache``."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``manyarch ARGS`` in this process."""
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("extra", "message", "hint"),
    [
        (["--suite", "nosuchsuite"], "suite 'nosuchsuite' not found", "--suite"),
        (["--mirror", "http://127.0.0.1:9/debian"], "cannot reach mirror", "--mirror"),
        (
            # A mirror without dists/: deb.debian.org answers 400 (another host may 404).
            ["--mirror", "http://deb.debian.org/nothing-here"],
            r"(answered 4\d\d|not found) .*nothing-here",
            "--mirror|--suite",
        ),
    ],
)
@needs_root
def test_cli_mirror_errors_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str, hint: str
) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    args = ["base", "--platform", "linux/amd64,linux/arm64", "--cache-dir", str(cache)]
    code, _, err = run_cli([*args, *extra, "--output", f"type=oci,dest={out}"], capsys)
    assert code == 1
    assert re.search(f"^error: .*({message})", err, re.M), err
    assert re.search(f"^hint: .*({hint})", err, re.M), err
    assert not out.exists()
    assert cache_entries(cache) == []


@pytest.mark.slow
@needs_root
def test_cli_unknown_package_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "out.tar"
    code, _, err = run_cli(
        [
            "base",
            "--platform",
            "linux/arm64",
            "--include",
            "python3,nosuchpkg-manyarch",
            "--cache-dir",
            str(cache),
            "-o",
            f"type=oci,dest={out}",
        ],
        capsys,
    )
    assert code == 1
    assert "error: package nosuchpkg-manyarch not found in bookworm (arm64)" in err
    assert "packages.debian.org" in err
    assert not out.exists()
    assert cache_entries(cache) == []
    # The scratch rootfs is gone too.
    assert not [p for p in cache.iterdir() if p.name.startswith(".work-")]


@needs_root
def test_unknown_suite_through_mmdebstrap(tmp_path: Path) -> None:
    """Without the mirror check, mmdebstrap's own message is made readable."""
    opts = BaseOptions((ARM64,), suite="nosuchsuite", cache_dir=tmp_path)
    with pytest.raises(BuildError, match="suite 'nosuchsuite' not found"):
        mmdebstrap.prepare_rootfs(opts, ARM64, tmp_path / "root")


def test_cli_without_mmdebstrap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "out"
    code, _, err = run_cli(
        [
            "base",
            "--platform",
            "linux/arm64",
            "--no-cache",
            "--cache-dir",
            str(tmp_path / "c"),
            "-o",
            f"type=oci,dest={out}",
        ],
        capsys,
    )
    assert code == 1
    assert "error: mmdebstrap is not installed" in err
    assert "hint: install it: sudo apt-get install mmdebstrap" in err
    assert not out.exists()
    with pytest.raises(ToolMissing):
        mmdebstrap.mmdebstrap_path()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--push"], "--push needs a name"),
        (["-o", "type=local,dest=x"], "cannot write --output type=local"),
        (["-o", "type=oci"], "type=oci needs dest"),
        (["--preset", "ruby"], "invalid choice"),
    ],
)
def test_cli_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], match: str
) -> None:
    code, _, err = run_cli(
        ["base", "--platform", "linux/amd64", "--cache-dir", str(tmp_path), *args], capsys
    )
    assert code == 2
    assert match in err
    assert cache_entries(tmp_path) == []


# -- the python base, built once per session --------------------------------------------


def unpack_layer(base_: PythonBase, platform: Platform, dest: Path) -> Path:
    """The platform's rootfs, unpacked from its layer by GNU tar (an independent reader)."""
    layout = Layout.open(base_.layout)
    index = Index.parse(layout.read_document(layout.resolve(base_.tag)))
    desc = index.select(platform)
    assert desc is not None
    manifest = Manifest.parse(layout.read_document(desc))
    assert len(manifest.layers) == 1
    root = dest / str(platform).replace("/", "-")
    if not root.exists():
        root.mkdir(parents=True)
        blob = layout.blob_path(manifest.layers[0].digest)
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(root), "--numeric-owner"], check=True)
    return root


@pytest.fixture(scope="session")
def rootfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("base-rootfs")


def chroot(
    root: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``root`` (foreign binaries through the binfmt handler's F flag)."""
    environ = {"PATH": base_options.DEFAULT_PATH, "LANG": "C.UTF-8", "HOME": "/root", **(env or {})}
    return subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, env=environ, timeout=120
    )


@pytest.mark.slow
@needs_root
def test_python_base_index(python_base: PythonBase) -> None:
    layout = Layout.open(python_base.layout)
    index = Index.parse(layout.read_document(layout.resolve(python_base.tag)))
    assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
    for desc in index.manifests:
        manifest = Manifest.parse(layout.read_document(desc))
        config = ImageConfig.parse(layout.read_document(manifest.config))
        assert config.platform == desc.platform
        assert config.created == "2023-11-14T22:13:20Z"
        env = config.config.env_dict()
        assert env["PATH"] == base_options.DEFAULT_PATH
        assert env["LANG"] == "C.UTF-8"
        assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
        assert env["PYTHON_VERSION"].startswith("3.")
        assert config.config.cmd == ("python3",)
        labels = config.config.labels
        assert labels["dev.manyarch.base.suite"] == "bookworm"
        assert labels["dev.manyarch.base.mirror"] == base_options.DEFAULT_MIRROR
        assert [h.created for h in config.history] == ["2023-11-14T22:13:20Z"]
        assert len(config.diff_ids) == 1
    assert layout.verify() == []


@pytest.mark.slow
@needs_root
@pytest.mark.parametrize(("platform", "machine"), [(AMD64, "x86_64"), (ARM64, "aarch64")])
def test_python_base_runs(
    python_base: PythonBase, rootfs_dir: Path, platform: Platform, machine: str
) -> None:
    if not emulation.can_run(platform):
        pytest.skip(f"no emulation for {platform}: run 'manyarch emulation install'")
    root = unpack_layer(python_base, platform, rootfs_dir)
    code = "import platform, ssl, sqlite3, json; print(platform.machine())"
    r = chroot(root, "python3", "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == machine
    for argv in (["python3", "-m", "pip", "--version"], ["pip", "--version"], ["python", "-V"]):
        r = chroot(root, *argv)
        assert r.returncode == 0, (argv, r.stderr)
    # ssl finds the CA bundle the image was given (no certifi, no network needed).
    r = chroot(
        root,
        "python3",
        "-c",
        "import ssl; print(ssl.create_default_context().cert_store_stats()['x509_ca'])",
    )
    assert int(r.stdout) > 100, r.stderr
    # /bin/sh and coreutils for RUN steps; the nonroot user resolves.
    r = chroot(root, "/bin/sh", "-c", "mkdir -p /tmp/x && cat /etc/os-release | head -1")
    assert r.returncode == 0 and "Debian" in r.stdout, r.stderr
    passwd = (root / "etc/passwd").read_text()
    assert "nonroot:x:65532:65532:" in passwd
    assert (root / "etc/localtime").resolve().name == "UTC" or os.readlink(
        root / "etc/localtime"
    ).endswith("Etc/UTC")


def make_wheel(dest: Path) -> Path:
    """A minimal pure-Python wheel, so that pip install needs no network."""
    wheel = dest / "manyarch_probe-1.0-py3-none-any.whl"
    files = {
        "manyarch_probe/__init__.py": "VALUE = 42\n",
        "manyarch_probe-1.0.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: manyarch-probe\nVersion: 1.0\n"
        ),
        "manyarch_probe-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{n},,\n" for n in files) + "manyarch_probe-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("manyarch_probe-1.0.dist-info/RECORD", record)
    return wheel


@pytest.mark.slow
@needs_root
@pytest.mark.parametrize("platform", [AMD64, ARM64])
def test_pip_install_works_as_in_the_official_image(
    python_base: PythonBase, tmp_path: Path, platform: Platform
) -> None:
    if not emulation.can_run(platform):
        pytest.skip(f"no emulation for {platform}")
    root = unpack_layer(python_base, platform, tmp_path)
    assert not list((root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    make_wheel(root / "tmp")
    r = chroot(
        root,
        "pip",
        "install",
        "--no-index",
        "--no-cache-dir",
        "/tmp/manyarch_probe-1.0-py3-none-any.whl",
    )
    assert r.returncode == 0, r.stderr
    r = chroot(root, "python", "-c", "import manyarch_probe; print(manyarch_probe.__file__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("/usr/local/lib/python3.")


@pytest.mark.slow
@needs_root
def test_python_base_dpkg_status_is_valid(python_base: PythonBase, rootfs_dir: Path) -> None:
    root = unpack_layer(python_base, ARM64, rootfs_dir)
    out = dpkg_query(root, "-W", "-f=${Package} ${Architecture} ${db:Status-Abbrev}\n")
    rows = [line.split() for line in out.splitlines()]
    names = {r[0] for r in rows}
    assert {"python3", "python3.11", "python3-pip", "libc6", "ca-certificates", "tzdata"} <= names
    assert all(r[2] == "ii" for r in rows)
    assert ["libc6", "arm64", "ii"] in rows
    assert "/usr/bin/python3.11" in dpkg_query(root, "-L", "python3.11-minimal")
    # The stdlib is byte-compiled, as python3's postinst would have done.
    assert list((root / "usr/lib").glob("python3.*/__pycache__/os.cpython-3*.pyc"))
    # Nothing host-specific or bootstrap-only left behind.
    for rel in ("etc/resolv.conf", "etc/hostname", "var/cache/apt", "etc/apt"):
        assert not (root / rel).exists(), rel


@pytest.mark.slow
@needs_root
def test_python_base_is_cached(python_base_image: BaseImage) -> None:
    again = base_image.build_base(python_base_options())
    assert all(i.cached for i in again.images)
    assert again.digest == python_base_image.digest


@pytest.mark.slow
@needs_root
def test_two_cold_builds_give_the_same_digest(python_base_image: BaseImage, tmp_path: Path) -> None:
    fresh = base_image.build_base(python_base_options(cache_dir=tmp_path, use_cache=False))
    assert not any(i.cached for i in fresh.images)
    assert fresh.digest == python_base_image.digest


@pytest.mark.slow
@needs_root
def test_cli_push_and_archive(
    python_base_image: BaseImage,
    registry: RegistryServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(BASE_EPOCH))
    ref = f"{registry.host}/python:3.11-bookworm"
    archive = tmp_path / "python.tar"
    sbom = tmp_path / "sbom.spdx.json"
    code, out, err = run_cli(
        [
            "base",
            "--preset",
            "python",
            "--platform",
            "linux/amd64,linux/arm64",
            "--cache-dir",
            str(base_cache_dir()),
            "-t",
            ref,
            "--push",
            "-o",
            f"type=oci,dest={archive}",
            "--sbom",
            str(sbom),
        ],
        capsys,
    )
    assert code == 0, err
    digest = str(python_base_image.digest)
    assert out.strip().splitlines()[-1] == digest
    assert "[linux/arm64] cached" in err
    # skopeo, an independent reader, sees the index in the registry and in the archive.
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    index = Index.parse(raw.encode())
    assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
    assert hashlib.sha256(raw.encode()).hexdigest() == digest.split(":")[1]
    for arch in ("amd64", "arm64"):
        cfg = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--config",
                "--override-arch",
                arch,
                f"oci-archive:{archive}:3.11-bookworm",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert json.loads(cfg)["architecture"] == arch
    doc = json.loads(sbom.read_text())
    arches = {
        (p["name"], p["externalRefs"][0]["referenceLocator"].split("arch=")[1].split("&")[0])
        for p in doc["packages"]
    }
    assert {("python3.11", "amd64"), ("python3.11", "arm64"), ("tzdata", "all")} <= arches


def fake_python_lib(root: Path, magic: int) -> Path:
    """A ``usr/lib/python3.X`` with a module and the magic number line of importlib."""
    lib = root / f"usr/lib/python3.{sys.version_info[1]}"
    (lib / "importlib").mkdir(parents=True)
    (lib / "importlib/_bootstrap_external.py").write_text(
        f"MAGIC_NUMBER = ({magic}).to_bytes(2, 'little') + b'\\r\\n'\n"
    )
    (lib / "probe.py").write_text("WORDS = {'a', 'b', 'c', 'd'}\nx = 'a' in WORDS\n")
    return lib


def test_compile_python_with_the_host_interpreter(tmp_path: Path) -> None:
    magic = int.from_bytes(importlib.util.MAGIC_NUMBER[:2], "little")
    pycs = []
    for name in ("one", "two"):
        lib = fake_python_lib(tmp_path / name, magic)
        assert finish.compile_python(tmp_path / name) == [
            "/" + str(lib.relative_to(tmp_path / name))
        ]
        pyc = lib / "__pycache__" / f"probe.{sys.implementation.cache_tag}.pyc"
        pycs.append(pyc.read_bytes())
    data = pycs[0]
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b11  # PEP 552: hash-based, checked
    code = marshal.loads(data[16:])
    assert code.co_filename == f"/usr/lib/python3.{sys.version_info[1]}/probe.py"
    assert pycs[0] == pycs[1]  # reproducible, sets of constants included


def test_compile_python_skips_another_bytecode_version(tmp_path: Path) -> None:
    lib = fake_python_lib(tmp_path, 1)
    assert finish.compile_python(tmp_path) == []
    assert not (lib / "__pycache__").exists()


@pytest.mark.parametrize(
    ("maintainer", "supplier"),
    [
        ("Santiago Vila <sanvila@debian.org>", "Person: Santiago Vila (sanvila@debian.org)"),
        (
            "Debian Python Team <team+python@tracker.debian.org>",
            "Organization: Debian Python Team (team+python@tracker.debian.org)",
        ),
        (
            "GNU Libc Maintainers <debian-glibc@lists.debian.org>",
            "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)",
        ),
        ("Someone", "Person: Someone"),
        ("", "NOASSERTION"),
    ],
)
def test_spdx_supplier(maintainer: str, supplier: str) -> None:
    assert spdx._spdx_supplier(maintainer) == supplier


def test_a_base_without_source_date_epoch_is_as_old_as_its_newest_package(tmp_path: Path) -> None:
    # the files a .deb unpacks keep the package's time; those written while the rootfs
    # was finished are newer than its start and do not count ("56 years ago" otherwise)
    root = tmp_path / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    for name, mtime in (("old", 1_600_000_000), ("newest-package", 1_700_000_000)):
        (root / "usr/bin" / name).write_text(name)
        os.utime(root / "usr/bin" / name, (mtime, mtime))
    (root / "etc").mkdir()
    (root / "etc/written-while-finishing").write_text("x")
    os.utime(root / "etc/written-while-finishing", (1_900_000_000, 1_900_000_000))
    assert base_image.packages_epoch(root, before=1_800_000_000) == 1_700_000_000
    info = finish.RootfsInfo(packages=(), os_release={}, certificates=0)
    d = Digest.parse("sha256:" + "0" * 64)
    opts = BaseOptions(platforms=(Platform.parse("linux/amd64"),))
    config = base_image.image_config(
        opts, Platform.parse("linux/amd64"), info, d, True, 1_700_000_000
    )
    assert config.created == "2023-11-14T22:13:20Z"
    assert [h.created for h in config.history] == ["2023-11-14T22:13:20Z"]
    # SOURCE_DATE_EPOCH wins
    opts = BaseOptions(platforms=(Platform.parse("linux/amd64"),), epoch=0)
    config = base_image.image_config(
        opts, Platform.parse("linux/amd64"), info, d, True, 1_700_000_000
    )
    assert config.created == "1970-01-01T00:00:00Z"
    assert base_image.packages_epoch(tmp_path / "empty", before=0) is None
