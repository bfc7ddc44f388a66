"""Which attestations a build makes: buildx's ``--attest``, ``--sbom`` and ``--provenance``.

``--attest type=sbom|provenance[,KEY=VALUE...][,disabled=BOOL]``; ``--sbom
X`` and ``--provenance X`` are ``--attest type=sbom,X`` (a boolean X is
``disabled=!X``) placed after every ``--attest``, and a later entry of a type
replaces an earlier one (buildx ``CanonicalizeAttest``, ``removeAttestDupes``).

buildx adds ``type=provenance,mode=min`` to every build unless
``BUILDX_NO_DEFAULT_ATTESTATIONS`` is true. manyarch does the opposite: no
attestation unless one is asked for, because an attestation changes the
output (an OCI index with one more manifest per platform) and the seed's is
a Docker manifest list of two entries. ``BUILDX_NO_DEFAULT_ATTESTATIONS=0``
(or ``false``) asks for buildx's default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from manyarch.attest.provenance import ProvenanceOptions
from manyarch.errors import InvalidArgument

ENV_NO_DEFAULT = "BUILDX_NO_DEFAULT_ATTESTATIONS"
#: buildx's default SBOM generator: manyarch reads the layers itself and runs none.
DEFAULT_GENERATOR = "docker/buildkit-syft-scanner"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_PROVENANCE_KEYS = {"mode", "version", "builder-id", "reproducible", "inline-only", "filename"}
_SBOM_KEYS = {"generator"}


def parse_bool(text: str, what: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidArgument(f"invalid {what} {text!r}: not a boolean", "write true or false")


@dataclass(frozen=True)
class AttestSpec:
    """One ``--attest``: its type, whether disabled, its other attributes."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    disabled: bool = False

    @classmethod
    def parse(cls, text: str) -> AttestSpec:
        """buildx's CSV (``type=provenance,mode=max``)."""
        kind, disabled, attrs = "", False, {}
        for item in text.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidArgument(f"invalid value {item}", "write --attest type=TYPE,KEY=VALUE")
            name = key.strip().lower()
            if name == "type":
                kind = value
            elif name == "disabled":
                disabled = parse_bool(value, f"value {item}")
            else:
                attrs[key] = value
        if not kind:
            raise InvalidArgument(
                "attestation type not specified", "add type=sbom or type=provenance"
            )
        return cls(kind, attrs, disabled)

    @classmethod
    def canonical(cls, kind: str, value: str) -> AttestSpec | None:
        """``--sbom VALUE`` / ``--provenance VALUE`` (``true``, ``false``, ``mode=max``...)."""
        if not value:
            return None
        if value in (*_TRUE, *_FALSE):
            return cls(kind, {}, not parse_bool(value, f"--{kind}"))
        return cls.parse(f"type={kind},{value}")


@dataclass(frozen=True)
class Attestations:
    """The attestations of one build (None: not made)."""

    sbom: AttestSpec | None = None
    provenance: ProvenanceOptions | None = None

    def __bool__(self) -> bool:
        return self.sbom is not None or self.provenance is not None


def _known(spec: AttestSpec, keys: set[str], hint: str) -> None:
    unknown = sorted(set(spec.attrs) - keys)
    if unknown:
        raise InvalidArgument(f"unknown {spec.type} attribute {unknown[0]!r}", hint)


def _provenance(spec: AttestSpec) -> ProvenanceOptions:
    _known(spec, _PROVENANCE_KEYS, "provenance takes mode, version, builder-id, reproducible")
    mode = spec.attrs.get("mode", "max")
    mode = "max" if mode == "full" else mode
    if mode not in ("min", "max"):
        raise InvalidArgument(f"invalid mode {mode!r}", "provenance mode is min or max")
    version = spec.attrs.get("version", "v0.2")
    if version not in ("v0.2", "v1"):
        raise InvalidArgument(
            f"unsupported provenance version {version!r}", "provenance version is v0.2 or v1"
        )
    reproducible = spec.attrs.get("reproducible")
    return ProvenanceOptions(
        mode=mode,
        version=version,
        builder_id=spec.attrs.get("builder-id", ""),
        reproducible=parse_bool(reproducible, "reproducible") if reproducible else False,
    )


def _sbom(spec: AttestSpec) -> AttestSpec:
    _known(spec, _SBOM_KEYS, "manyarch's SBOM takes no scanner options: it reads the layers")
    generator = spec.attrs.get("generator", DEFAULT_GENERATOR)
    if generator.split(":", 1)[0].split("@", 1)[0].removeprefix("docker.io/") != DEFAULT_GENERATOR:
        raise InvalidArgument(
            f"SBOM generator {generator!r} is not supported",
            "manyarch scans the image itself (as buildkit-syft-scanner would); drop generator=",
        )
    return spec


def attestations(
    attest: Sequence[str | AttestSpec] = (),
    *,
    sbom: str | None = None,
    provenance: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Attestations:
    """The attestations asked by ``--attest``, ``--sbom`` and ``--provenance``."""
    env = os.environ if env is None else env
    specs = [AttestSpec.parse(a) if isinstance(a, str) else a for a in attest]
    for kind, value in (("sbom", sbom), ("provenance", provenance)):
        got = AttestSpec.canonical(kind, value) if value is not None else None
        if got is not None:
            specs.append(got)
    chosen: dict[str, AttestSpec] = {}
    for spec in specs:  # a later one of a type replaces the earlier
        chosen[spec.type] = spec
    for kind in chosen:
        if kind not in ("sbom", "provenance"):
            raise InvalidArgument(
                f"unknown attestation type {kind!r}", "use type=sbom or type=provenance"
            )
    no_default = env.get(ENV_NO_DEFAULT)
    if "provenance" not in chosen and no_default and not parse_bool(no_default, ENV_NO_DEFAULT):
        chosen["provenance"] = AttestSpec("provenance", {"mode": "min"})
    s = chosen.get("sbom")
    p = chosen.get("provenance")
    return Attestations(
        sbom=_sbom(s) if s is not None and not s.disabled else None,
        provenance=_provenance(p) if p is not None and not p.disabled else None,
    )
