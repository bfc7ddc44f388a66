"""What the planner knows besides the Dockerfile (pure): the automatic platform ARGs, and
buildx's ``--build-context NAME=VALUE`` (BuildKit's named contexts).

A named context stands for ``NAME`` wherever a FROM, a ``COPY --from`` or a
``RUN --mount ... from=`` names it, before any stage of that name (BuildKit's
``testNamedImageContext``, ``testNamedLocalContext``): ``docker-image://REF``
is that image, ``oci-layout://PATH[:TAG|@DIGEST]`` an image of a layout, and
anything else a local directory (``context:<absolute path>`` in the plan).
"""

from __future__ import annotations

from collections.abc import Mapping

from manyarch.oci import Platform

#: How the plan names a local directory given as a named context.
LOCAL = "context:"


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    """The automatic platform ARGs of the global scope (TARGETPLATFORM, BUILDARCH, ...)."""
    return {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
    }


def named_source(name: str, contexts: Mapping[str, str]) -> str | None:
    """What ``name`` stands for in the plan: an image reference, ``context:<dir>``, or None."""
    value = contexts.get(name) or contexts.get(name.lower())
    if value is None:
        return None
    if value.startswith("docker-image://"):
        return value.removeprefix("docker-image://")
    if value.startswith("oci-layout://"):
        return value
    return LOCAL + value
