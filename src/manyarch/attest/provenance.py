"""SLSA provenance of a build, in BuildKit's shape (moby/buildkit ``solver/llbsolver/provenance``).

One predicate per platform, v0.2 (``https://slsa.dev/provenance/v0.2``,
the default here) or v1, ``mode=min`` or ``mode=max`` as BuildKit makes
them: the frontend's request (build args, labels and target, which
``mode=min`` leaves out and then calls incomplete), the builder's platform,
the materials with their digests (the base images as resolved; here also the
wheels the build fetched, and what RUN steps installed without a digest to
give), and in ``mode=max`` the Dockerfile itself and the steps with their
layers. ``materials`` is never complete (the context is a local source).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BUILD_TYPE_V02 = "https://mobyproject.org/buildkit@v1"
BUILD_TYPE_V1 = "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
PREDICATE_V02 = "https://slsa.dev/provenance/v0.2"
PREDICATE_V1 = "https://slsa.dev/provenance/v1"
_METADATA = "https://mobyproject.org/buildkit@v1#metadata"


@dataclass(frozen=True)
class Material:
    """Something the build used, by URI (a purl), with its digests when known."""

    uri: str
    digest: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"uri": ..., "digest": {...}}`` (no digest when none is known)."""
        out: dict[str, Any] = {"uri": self.uri}
        if self.digest:
            out["digest"] = dict(self.digest)
        return out


@dataclass(frozen=True)
class Step:
    """One step of the image, as its history records it, and its layer when it made one."""

    text: str
    layers: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class BuildFacts:
    """What a build's provenance says, gathered by whoever ran it."""

    #: the Dockerfile's name, as BuildKit's ``filename`` (``Dockerfile``)
    entry_point: str
    #: BuildKit's frontend attributes: ``build-arg:K``, ``label:K``, ``target``
    args: Mapping[str, str]
    builder_platform: str
    started: str
    finished: str
    invocation_id: str
    materials: Sequence[Material] = ()
    dockerfile: bytes = b""
    steps: Sequence[Step] = ()
    builder_id: str = ""
    reproducible: bool = False
    vcs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProvenanceOptions:
    """``--attest type=provenance,mode=min|max,version=v0.2|v1,builder-id=...``."""

    mode: str = "max"
    version: str = "v0.2"
    builder_id: str = ""
    reproducible: bool = False

    @property
    def predicate_type(self) -> str:
        """The statement's ``predicateType``."""
        return PREDICATE_V1 if self.version == "v1" else PREDICATE_V02


def _request(facts: BuildFacts, mode: str) -> tuple[dict[str, Any], bool]:
    args = dict(sorted(facts.args.items()))
    complete = True
    if mode == "min":
        kept = {k: v for k, v in args.items() if not k.startswith(("build-arg:", "label:"))}
        complete = kept == args
        args = kept
    request: dict[str, Any] = {"frontend": "dockerfile.v0"}
    if args:
        request["args"] = args
    request["locals"] = [{"name": "context"}, {"name": "dockerfile"}]
    return request, complete


def _build_config(facts: BuildFacts) -> dict[str, Any]:
    steps = []
    for i, step in enumerate(facts.steps):
        entry: dict[str, Any] = {"id": f"step{i}", "op": {"dockerfile": step.text}}
        if i:
            entry["inputs"] = [f"step{i - 1}:0"]
        steps.append(entry)
    return {"llbDefinition": steps}


def _buildkit_metadata(facts: BuildFacts, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if facts.vcs:
        out["vcs"] = dict(facts.vcs)
    if mode == "max":
        out["source"] = {
            "infos": [
                {
                    "filename": facts.entry_point,
                    "language": "Dockerfile",
                    "data": base64.b64encode(facts.dockerfile).decode(),
                }
            ]
        }
        layers = {
            f"step{i}:0": [list(step.layers)] for i, step in enumerate(facts.steps) if step.layers
        }
        if layers:
            out["layers"] = layers
    return out


def predicate(facts: BuildFacts, options: ProvenanceOptions) -> dict[str, Any]:
    """The provenance predicate, v0.2 or v1, ``mode=min`` or ``max``."""
    request, complete = _request(facts, options.mode)
    materials = [m.to_json() for m in facts.materials]
    builder = {"id": options.builder_id or facts.builder_id}
    if options.version == "v1":
        internal: dict[str, Any] = {}
        if options.mode == "max":
            internal["buildConfig"] = _build_config(facts)
        internal["builderPlatform"] = facts.builder_platform
        run_meta: dict[str, Any] = {
            "invocationId": facts.invocation_id,
            "startedOn": facts.started,
            "finishedOn": facts.finished,
            "buildkit_metadata": _buildkit_metadata(facts, options.mode),
            "buildkit_completeness": {"request": complete, "resolvedDependencies": False},
        }
        if options.reproducible or facts.reproducible:
            run_meta["buildkit_reproducible"] = True
        return {
            "buildDefinition": {
                "buildType": BUILD_TYPE_V1,
                "externalParameters": {
                    "configSource": {"path": facts.entry_point},
                    "request": request,
                },
                "internalParameters": internal,
                "resolvedDependencies": materials,
            },
            "runDetails": {"builder": builder, "metadata": run_meta},
        }
    out: dict[str, Any] = {
        "builder": builder,
        "buildType": BUILD_TYPE_V02,
        "materials": materials,
        "invocation": {
            "configSource": {"entryPoint": facts.entry_point},
            "parameters": request,
            "environment": {"platform": facts.builder_platform},
        },
    }
    if options.mode == "max":
        out["buildConfig"] = _build_config(facts)
    out["metadata"] = {
        "buildInvocationID": facts.invocation_id,
        "buildStartedOn": facts.started,
        "buildFinishedOn": facts.finished,
        "completeness": {"parameters": complete, "environment": True, "materials": False},
        "reproducible": options.reproducible or facts.reproducible,
        _METADATA: _buildkit_metadata(facts, options.mode),
    }
    return out


def record_provenance(predicate: Mapping[str, Any], *, keep: str = "min") -> dict[str, Any]:
    """buildx's ``buildx.build.provenance`` of the metadata file: v0.2, without
    ``buildConfig`` and ``metadata`` unless ``keep`` is ``max``."""
    out = dict(predicate)
    if keep != "max":
        out.pop("buildConfig", None)
        out.pop("metadata", None)
    return out
