"""in-toto's own Python bindings (in-toto/attestation ``python/``) as the judge of a statement."""

from __future__ import annotations

import json
from typing import Any

import pytest

json_format = pytest.importorskip("google.protobuf.json_format")
statement_pb2 = pytest.importorskip("in_toto_attestation.v1.statement_pb2")
statement_mod = pytest.importorskip("in_toto_attestation.v1.statement")
provenance_pb2 = pytest.importorskip("in_toto_attestation.predicates.provenance.v1.provenance_pb2")


def check_statement(data: bytes) -> dict[str, Any]:
    """Parse ``data`` as an in-toto Statement v1 and validate it; returns it as JSON."""
    pb = json_format.Parse(data, statement_pb2.Statement())
    statement_mod.Statement.copy_from_pb(pb).validate()
    obj: dict[str, Any] = json.loads(data)
    assert list(obj) == ["_type", "predicateType", "subject", "predicate"]  # BuildKit's order
    return obj


def check_slsa_v1(predicate: dict[str, Any]) -> None:
    """SLSA provenance v1 as in-toto's protobuf schema reads it (BuildKit's extensions aside)."""
    json_format.ParseDict(predicate, provenance_pb2.Provenance(), ignore_unknown_fields=True)
