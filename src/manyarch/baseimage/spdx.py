"""An SPDX 2.3 document of what a base image holds (its Debian packages)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from manyarch._version import __version__
from manyarch.baseimage.image import BaseImage
from manyarch.debian.deb import Package, spdx_supplier
from manyarch.units import rfc3339


def _purl(p: Package, distro: str) -> str:
    version = quote(p.version, safe="")
    out = f"pkg:deb/debian/{quote(p.name, safe='')}@{version}?arch={p.architecture}"
    if p.source and p.source_name != p.name:
        out += f"&upstream={quote(p.source_name, safe='')}"
    return out + (f"&distro={distro}" if distro else "")


def spdx_document(image: BaseImage, name: str, created: str | None = None) -> dict[str, Any]:
    """The installed packages of every platform as an SPDX 2.3 JSON document."""
    opts = image.options
    when = created or (
        rfc3339(opts.epoch)
        if opts.epoch is not None
        else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    packages: dict[tuple[str, str, str], dict[str, Any]] = {}
    for img in image.images:
        rel = img.os_release
        distro = f"{rel.get('ID', 'debian')}-{rel['VERSION_ID']}" if rel.get("VERSION_ID") else ""
        for p in img.packages:
            k = (p.name, p.version, p.architecture)
            if k in packages:
                continue
            spdx_id = "SPDXRef-Package-deb-" + re.sub(
                r"[^A-Za-z0-9.-]", "-", f"{p.name}-{p.version}-{p.architecture}"
            )
            entry: dict[str, Any] = {
                "SPDXID": spdx_id,
                "name": p.name,
                "versionInfo": p.version,
                "supplier": spdx_supplier(p.maintainer),
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "sourceInfo": f"built from Debian source package {p.source_name}",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": _purl(p, distro),
                    }
                ],
            }
            if p.homepage:
                entry["homepage"] = p.homepage
            packages[k] = entry
    ordered = [packages[k] for k in sorted(packages)]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://manyarch.dev/spdx/base/{image.digest.hex}",
        "creationInfo": {"created": when, "creators": [f"Tool: manyarch-{__version__}"]},
        "packages": ordered,
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": p["SPDXID"],
            }
            for p in ordered
        ],
    }
