"""Attestations in BuildKit's format: an SPDX SBOM and SLSA provenance per platform.

scan        what an image holds, read from its layers (dpkg, *.dist-info)
spdx        the SPDX 2.3 document of it
provenance  SLSA provenance v0.2 / v1, mode=min / max
facts       what a build's provenance states (request, times, vcs)
intoto      statements, purls, attestation manifests
options     buildx's --attest / --sbom / --provenance
make        one platform's predicates
"""

from manyarch.attest.options import Attestations, AttestSpec, attestations

__all__ = ["AttestSpec", "Attestations", "attestations"]
