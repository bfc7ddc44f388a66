"""The SBOM's SPDX document, read by an independent library (spdx-tools) and held to its
validator; purls and licences as syft and BuildKit write them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from manyarch.attest.scan import Contents, PythonDist
from manyarch.attest.spdx import deb_purl, license_of, pypi_purl, spdx_document
from manyarch.debian.deb import Package

spdx_parser = pytest.importorskip("spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser")
spdx_validator = pytest.importorskip("spdx_tools.spdx.validation.document_validator")


def validate(doc: dict[str, Any]) -> list[str]:
    """spdx-tools' verdict: [] when the document is valid SPDX 2.3."""
    parsed = spdx_parser.JsonLikeDictParser().parse(copy.deepcopy(doc))
    return [m.validation_message for m in spdx_validator.validate_full_spdx_document(parsed)]


GLIBC_TEAM = "GNU Libc Maintainers <debian-glibc@lists.debian.org>"
LIBC = Package("libc6", "2.36-9+deb12u4", "arm64", "glibc", GLIBC_TEAM, "https://gnu.org/libc/")
ZLIB = Package(
    "zlib1g",
    "1:1.2.13.dfsg-1",
    "arm64",
    "zlib (1:1.2.13.dfsg-1)",
    "Mark Brown <broonie@debian.org>",
)
FASTAPI = PythonDist(
    "fastapi", "0.110.0", "/usr/local/lib/python3.11/site-packages/fastapi-0.110.0.dist-info",
    license_expression="", license="", classifiers=("License :: OSI Approved :: MIT License",),
    homepage="https://github.com/tiangolo/fastapi", tags=("py3-none-any",), installer="pip",
)  # fmt: skip
TYPING = PythonDist(
    "typing_extensions", "4.9.0", "/usr/lib/python3/dist-packages/typing_extensions.dist-info",
    license_expression="PSF-2.0",
)  # fmt: skip
ODD = PythonDist("odd", "1.0+local", "/opt/odd-1.0+local.dist-info", license="Some Custom Licence")


@pytest.mark.parametrize(
    ("contents"),
    [
        Contents((LIBC, ZLIB), (FASTAPI, TYPING, ODD), {"ID": "debian", "VERSION_ID": "12"}),
        Contents((), (), {}),
        Contents((LIBC,), (), {}),
        Contents((), (FASTAPI,), {}),
    ],
    ids=["debian-and-python", "empty", "one-deb", "one-dist"],
)
def test_spdx_tools_accepts_the_document(contents: Contents) -> None:
    doc = spdx_document(contents, "localhost:5000/app:1", "2023-11-14T22:13:20Z",
                        {FASTAPI.path: "ab" * 32})  # fmt: skip
    assert validate(doc) == []
    root, *held = doc["packages"]
    assert (root["name"], root["primaryPackagePurpose"]) == ("localhost:5000/app:1", "CONTAINER")
    names = sorted(p["name"] for p in held)
    assert names == sorted([p.name for p in contents.debian] + [d.name for d in contents.python])
    assert doc["relationships"][0]["relatedSpdxElement"] == root["SPDXID"]


def test_packages_say_what_syft_says() -> None:
    contents = Contents((LIBC, ZLIB), (FASTAPI, TYPING, ODD), {"ID": "debian", "VERSION_ID": "12"})
    doc = spdx_document(contents, "app", "2023-11-14T22:13:20Z", {FASTAPI.path: "ab" * 32})
    by = {p["name"]: p for p in doc["packages"]}
    assert by["libc6"]["externalRefs"][0]["referenceLocator"] == (
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=arm64&upstream=glibc&distro=debian-12"
    )
    assert by["zlib1g"]["supplier"] == "Person: Mark Brown (broonie@debian.org)"
    assert by["libc6"]["supplier"].startswith("Organization: GNU Libc Maintainers")
    assert by["fastapi"]["licenseDeclared"] == "MIT"
    assert by["fastapi"]["checksums"] == [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]
    assert by["fastapi"]["sourceInfo"].endswith(
        "fastapi-0.110.0.dist-info/METADATA (installed by pip from a wheel tagged py3-none-any)"
    )
    assert by["typing_extensions"]["licenseDeclared"] == "PSF-2.0"
    assert by["odd"]["licenseDeclared"] == "NOASSERTION"
    assert by["odd"]["licenseComments"] == "License: Some Custom Licence"
    assert doc["creationInfo"] == {
        "created": "2023-11-14T22:13:20Z", "creators": ["Tool: manyarch-0.1.0"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("package", "distro", "purl"),
    [
        (ZLIB, "debian-12",
         "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=arm64&upstream=zlib&distro=debian-12"),
        (Package("bash", "5.2.15-2+b2", "amd64"), "",
         "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64"),
    ],
)  # fmt: skip
def test_deb_purls(package: Package, distro: str, purl: str) -> None:
    assert deb_purl(package, distro) == purl


def test_pypi_purls_and_licences() -> None:
    assert pypi_purl(TYPING) == "pkg:pypi/typing-extensions@4.9.0"
    assert pypi_purl(ODD) == "pkg:pypi/odd@1.0%2Blocal"
    osi = "License :: OSI Approved :: "
    both = PythonDist(
        "x", "1", "/x", classifiers=(f"{osi}MIT License", f"{osi}Apache Software License")
    )
    assert license_of(both) == "MIT OR Apache-2.0"
    assert (
        license_of(PythonDist("y", "1", "/y", license_expression="GPL-2.0 WITH x; rm"))
        == "NOASSERTION"
    )
