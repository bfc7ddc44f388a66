"""What an image holds, read from its layers: whiteouts, opaque directories, links,
distroless dpkg status files, every kind of dist-info."""

from __future__ import annotations

from pathlib import Path

from manyarch.attest.scan import read_files, scan
from manyarch.layers import TarEntry, write_layer

STATUS = """\
Package: zlib1g
Status: install ok installed
Architecture: arm64
Source: zlib
Version: 1:1.2.13.dfsg-1
Maintainer: Mark Brown <broonie@debian.org>

Package: removed-one
Status: deinstall ok config-files
Architecture: arm64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: arm64
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
"""

METADATA = """\
Metadata-Version: 2.1
Name: {name}
Version: {version}
License: MIT
Classifier: License :: OSI Approved :: MIT License
Project-URL: Homepage, https://example.org/{name}

Long description that is not read.
"""


def layer(
    tmp: Path, name: str, entries: list[TarEntry], compression: str | None = "gzip"
) -> tuple[str, Path]:
    path = tmp / f"{name}.blob"
    with open(path, "wb") as f:
        write_layer(entries, f, compression=compression)
    return name, path


def dist(site: str, name: str, version: str) -> list[TarEntry]:
    d = f"{site}/{name}-{version}.dist-info"
    return [
        TarEntry.file(f"{d}/METADATA", METADATA.format(name=name, version=version).encode()),
        TarEntry.file(f"{d}/WHEEL", b"Wheel-Version: 1.0\nTag: py3-none-any\n"),
        TarEntry.file(f"{d}/INSTALLER", b"pip\n"),
        TarEntry.file(f"{d}/RECORD", b""),
    ]


SITE = "usr/local/lib/python3.11/site-packages"


def test_layers_read_with_whiteouts_and_links(tmp_path: Path) -> None:
    base = layer(tmp_path, "base", [
        TarEntry.file("var/lib/dpkg/status", STATUS.encode()),
        TarEntry.file("usr/lib/os-release", b'ID=debian\nVERSION_ID="12"\n'),
        TarEntry.symlink("etc/os-release", "../usr/lib/os-release"),
        *dist(SITE, "pip", "23.0.1"),
        *dist(SITE, "setuptools", "65.5.0"),
        *dist("opt/tools/lib", "gone-dir", "1.0"),
    ])  # fmt: skip
    app = layer(tmp_path, "app", [
        TarEntry.whiteout(f"{SITE}/setuptools-65.5.0.dist-info"),
        TarEntry.opaque("opt/tools"),
        *dist(SITE, "fastapi", "0.110.0"),
        *dist(SITE, "Typing_Extensions", "4.9.0"),
    ], compression="zstd")  # fmt: skip
    got = scan([base, app])
    assert [(p.name, p.version) for p in got.debian] == [
        ("libc6", "2.36-9+deb12u4"), ("zlib1g", "1:1.2.13.dfsg-1"),
    ]  # fmt: skip
    assert got.distro == "debian-12"
    assert sorted((d.name, d.version) for d in got.python) == [
        ("Typing_Extensions", "4.9.0"), ("fastapi", "0.110.0"), ("pip", "23.0.1"),
    ]  # fmt: skip
    te = next(d for d in got.python if d.name == "Typing_Extensions")
    assert te.normalized_name == "typing-extensions"
    assert te.path == f"/{SITE}/Typing_Extensions-4.9.0.dist-info"
    assert (te.tags, te.installer, te.homepage) == (
        ("py3-none-any",), "pip", "https://example.org/Typing_Extensions",
    )  # fmt: skip


def test_a_file_replacing_a_directory_hides_its_tree(tmp_path: Path) -> None:
    a = layer(tmp_path, "a", dist(SITE, "old", "1.0"))
    b = layer(tmp_path, "b", [TarEntry.file(SITE, b"not a directory any more")])
    assert scan([a, b]).python == ()
    assert read_files([a]).data  # what the first layer alone holds


def test_distroless_status_d_and_hard_links(tmp_path: Path) -> None:
    para = "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n"
    one = layer(tmp_path, "one", [
        TarEntry.file("var/lib/dpkg/status.d/base-files", para.encode()),
        TarEntry.file("var/lib/dpkg/status.d/base-files.md5sums", b"abc  etc/x\n"),
        *dist(SITE, "solo", "2.0"),
        TarEntry.hardlink(
            f"{SITE}/z-2.0.dist-info/METADATA", f"{SITE}/solo-2.0.dist-info/METADATA"
        ),
    ])  # fmt: skip
    got = scan([one])
    assert [(p.name, p.version, p.architecture) for p in got.debian] == [
        ("base-files", "12.4", "amd64")
    ]
    assert sorted(d.path for d in got.python) == [
        f"/{SITE}/solo-2.0.dist-info", f"/{SITE}/z-2.0.dist-info",
    ]  # fmt: skip
