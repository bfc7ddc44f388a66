"""An SPDX 2.3 document of what an image holds, as BuildKit's SBOM attestation carries it.

Debian packages come from dpkg's database, Python distributions from every
``*.dist-info`` (:mod:`manyarch.attest.scan`); each package has its purl
(``pkg:deb/debian/NAME@VERSION?arch=...&distro=debian-12``,
``pkg:pypi/NAME@VERSION``), a Python distribution its licence when its
metadata names one SPDX knows, where it was installed from, and the sha256
of its wheel when the build fetched that wheel (native pip's cache).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from manyarch._version import __version__
from manyarch.attest.scan import Contents, PythonDist
from manyarch.debian.deb import Package, spdx_supplier

#: Trove classifiers and ``License:`` texts -> SPDX ids (the common ones; others are NOASSERTION).
_LICENSES = {
    "MIT License": "MIT",
    "MIT": "MIT",
    "BSD License": "",  # which BSD is not said
    "Apache Software License": "Apache-2.0",
    "Apache 2.0": "Apache-2.0",
    "Apache-2.0": "Apache-2.0",
    "Apache License 2.0": "Apache-2.0",
    "Apache License, Version 2.0": "Apache-2.0",
    "BSD-3-Clause": "BSD-3-Clause",
    "BSD 3-Clause License": "BSD-3-Clause",
    "BSD-2-Clause": "BSD-2-Clause",
    "ISC License (ISCL)": "ISC",
    "ISC": "ISC",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "MPL-2.0": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "PSF-2.0": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
}
#: What a PEP 639 ``License-Expression`` may hold (ids, ``AND``/``OR``/``WITH``, parentheses).
_EXPRESSION = re.compile(r"^[A-Za-z0-9.+\-() ]+$")


def license_of(dist: PythonDist) -> str:
    """The SPDX expression a distribution declares, or NOASSERTION."""
    if dist.license_expression and _EXPRESSION.match(dist.license_expression):
        return dist.license_expression
    found = []
    for c in dist.classifiers:
        if c.startswith("License :: "):
            spdx = _LICENSES.get(c.rsplit(" :: ", 1)[-1], "")
            if spdx and spdx not in found:
                found.append(spdx)
    if not found and dist.license in _LICENSES and _LICENSES[dist.license]:
        found.append(_LICENSES[dist.license])
    return " OR ".join(found) if found else "NOASSERTION"


def deb_purl(p: Package, distro: str) -> str:
    """``pkg:deb/debian/NAME@VERSION?arch=ARCH[&upstream=SRC][&distro=ID-VERSION]``."""
    out = f"pkg:deb/debian/{quote(p.name, safe='')}@{quote(p.version, safe=':')}"
    out += f"?arch={quote(p.architecture, safe='')}"
    if p.source_name != p.name:
        out += f"&upstream={quote(p.source_name, safe='')}"
    return out + (f"&distro={quote(distro, safe='')}" if distro else "")


def pypi_purl(d: PythonDist) -> str:
    """``pkg:pypi/NAME@VERSION`` (the name as PEP 503 normalises it)."""
    return f"pkg:pypi/{quote(d.normalized_name, safe='')}@{quote(d.version, safe='')}"


def _spdx_id(kind: str, *parts: str) -> str:
    text = "-".join(parts)
    short = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"SPDXRef-Package-{kind}-" + re.sub(r"[^A-Za-z0-9.-]+", "-", text)[:80] + f"-{short}"


def _purl_ref(locator: str) -> list[dict[str, str]]:
    return [
        {
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": locator,
        }
    ]


def deb_package(p: Package, distro: str) -> dict[str, Any]:
    """One Debian package as an SPDX package."""
    entry: dict[str, Any] = {
        "SPDXID": _spdx_id("deb", p.name, p.version, p.architecture),
        "name": p.name,
        "versionInfo": p.version,
        "supplier": spdx_supplier(p.maintainer),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "sourceInfo": f"acquired package info from DPKG DB: Debian source package {p.source_name}",
        "externalRefs": _purl_ref(deb_purl(p, distro)),
    }
    if p.homepage:
        entry["homepage"] = p.homepage
    return entry


def python_package(d: PythonDist, wheel_sha256: str | None) -> dict[str, Any]:
    """One Python distribution as an SPDX package."""
    how = f"installed by {d.installer}" if d.installer else "installed"
    wheel = f" from a wheel tagged {', '.join(d.tags)}" if d.tags else ""
    entry: dict[str, Any] = {
        "SPDXID": _spdx_id("python", d.name, d.version, d.path),
        "name": d.name,
        "versionInfo": d.version,
        "downloadLocation": d.url or "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": license_of(d),
        "copyrightText": "NOASSERTION",
        "sourceInfo": f"acquired package info from installed python package manifest file: "
        f"{d.path}/METADATA ({how}{wheel})",
        "externalRefs": _purl_ref(pypi_purl(d)),
    }
    if wheel_sha256:
        entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": wheel_sha256}]
    if d.homepage.startswith(("http://", "https://")):
        entry["homepage"] = d.homepage
    if d.license and entry["licenseDeclared"] == "NOASSERTION":
        entry["licenseComments"] = f"License: {d.license}"
    return entry


def spdx_document(
    contents: Contents,
    name: str,
    created: str,
    wheels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The SPDX 2.3 JSON document of an image's contents: the image as a package
    (``primaryPackagePurpose: CONTAINER``) the document DESCRIBES, which CONTAINS the
    others. ``name`` names the image; ``created`` is ``YYYY-MM-DDTHH:MM:SSZ``;
    ``wheels`` maps a distribution's dist-info path to its wheel's sha256.
    """
    packages = [deb_package(p, contents.distro) for p in contents.debian]
    packages += [python_package(d, (wheels or {}).get(d.path)) for d in contents.python]
    seen: set[str] = set()
    unique = []
    for p in packages:  # a package listed twice by dpkg (two status files) is one package
        if p["SPDXID"] not in seen:
            seen.add(p["SPDXID"])
            unique.append(p)
    body = hashlib.sha256(repr([p["SPDXID"] for p in unique]).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "image"
    root = {  # the image itself, which the document describes and which holds the rest (syft's)
        "SPDXID": _spdx_id("image", name),
        "name": name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    }
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://manyarch.dev/spdx/{slug}-{body[:32]}",
        "creationInfo": {
            "created": created,
            "creators": [f"Tool: manyarch-{__version__}"],
        },
        "packages": [root, *unique],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": root["SPDXID"],
            },
            *(
                {
                    "spdxElementId": root["SPDXID"],
                    "relationshipType": "CONTAINS",
                    "relatedSpdxElement": p["SPDXID"],
                }
                for p in unique
            ),
        ],
    }
