"""What ``--metadata-file`` holds after a build, as buildx writes it.

BuildKit's exporter response (``containerimage.digest``, ``containerimage.descriptor``,
``containerimage.config.digest`` for a single manifest, ``image.name``) and
buildx's own keys: ``buildx.build.ref`` (``BUILDER/NODE/REF``),
``buildx.build.provenance`` (per platform, ``buildx.build.provenance/OS/ARCH``,
when there are several: SLSA v0.2, ``mode=min`` without ``buildConfig`` and
``metadata`` unless ``BUILDX_METADATA_PROVENANCE=max``; none with
``disabled``) and ``buildx.build.warnings`` when ``BUILDX_METADATA_WARNINGS``
is true (build-push-action sets it).
"""

from __future__ import annotations

import base64
import os
import secrets
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from manyarch.imagebuild.options import BuildResult


def build_ref() -> str:
    """``BUILDER/NODE/REF``: the current builder (``default`` without one), its node, a new id."""
    from manyarch import builders

    current = builders.current()
    name = current.name if current is not None else "default"
    node = f"{name}0" if current is not None else "default"
    alphabet = string.ascii_lowercase + string.digits
    return f"{name}/{node}/{''.join(secrets.choice(alphabet) for _ in range(25))}"


def build_metadata(result: BuildResult, names: Sequence[str]) -> dict[str, Any]:
    """The metadata file's object for a build's result."""
    from manyarch.publish import metadata

    extra: dict[str, Any] = {"buildx.build.ref": build_ref()}
    mode = os.environ.get("BUILDX_METADATA_PROVENANCE", "min").strip().lower()
    if mode not in ("disabled", "false", "0") and result.provenance:
        many = len(result.provenance) > 1
        for platform, pred in result.provenance.items():
            key = f"buildx.build.provenance/{platform}" if many else "buildx.build.provenance"
            extra[key] = dict(pred)
    if os.environ.get("BUILDX_METADATA_WARNINGS", "").lower() in ("1", "true", "t"):
        extra["buildx.build.warnings"] = [
            {"short": base64.b64encode(w.encode()).decode()} for w in result.warnings
        ]
    return metadata(result.descriptor, names, result.config, **extra)
