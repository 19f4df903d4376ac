"""The wire contract: generated code matches the .proto files, and no RPC can return rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from accord.protos.v1 import common_pb2, coordinator_pb2, node_pb2

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {common_pb2.AGGREGATE, common_pb2.METADATA, common_pb2.STATUS, common_pb2.MASKED}
CRYPTOGRAPHIC_BYTES = {
    "accord.v1.SecureShare.certificate",
    "accord.v1.SecureShare.signature",
    "accord.v1.SecureKeyShare.payload_digest",
    "accord.v1.SecureKeyShare.public_key",
    "accord.v1.SecureKeyShare.certificate",
    "accord.v1.SecureKeyShare.signature",
}
"""The only bytes a response may carry: secure aggregation's keys, digests, certificates and
signatures, each checked for its exact form by the receiver (a key is 32 bytes, a certificate must
chain to the federation's CA, a signature must verify)."""


def test_generated_code_matches_proto_files() -> None:
    """Property: the committed *_pb2 files are exactly what the pinned generator makes today."""
    result = subprocess.run(
        [sys.executable, "-m", "accord.protos.codegen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _reachable_fields(root: Descriptor) -> list[tuple[str, FieldDescriptor]]:
    seen: set[str] = set()
    out: list[tuple[str, FieldDescriptor]] = []
    stack = [root]
    while stack:
        msg = stack.pop()
        if msg.full_name in seen:
            continue
        seen.add(msg.full_name)
        for field in msg.fields:
            out.append((msg.full_name, field))
            if field.message_type is not None:
                stack.append(field.message_type)
    return out


def _response_types() -> list[Descriptor]:
    types = []
    for module in (node_pb2, coordinator_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            types += [m.output_type for m in service.methods]
    return types


def test_every_response_field_is_aggregate_metadata_or_status() -> None:
    """Property: every field any RPC can return is annotated as an aggregate, public metadata or
    status; a new field without a reviewed annotation (e.g. a row of data) fails this test."""
    problems = []
    for response in _response_types():
        for owner, field in _reachable_fields(response):
            disclosure = field.GetOptions().Extensions[common_pb2.disclosure]
            if disclosure not in ALLOWED:
                problems.append(f"{owner}.{field.name} (reachable from {response.full_name})")
    assert problems == [], "fields without an allowed disclosure annotation: " + ", ".join(problems)


def test_no_response_carries_opaque_bytes() -> None:
    """Property: no response field is `bytes` (which could smuggle serialized rows)."""
    for response in _response_types():
        for owner, field in _reachable_fields(response):
            if field.full_name in CRYPTOGRAPHIC_BYTES:
                continue
            assert field.type != FieldDescriptor.TYPE_BYTES, f"{owner}.{field.name} is bytes"


def test_the_check_itself_catches_an_unannotated_field() -> None:
    """Property: the disclosure walk has teeth: the request type (never annotated) is flagged."""
    unannotated = [
        f.name
        for _, f in _reachable_fields(common_pb2.SignedQuery.DESCRIPTOR)
        if f.GetOptions().Extensions[common_pb2.disclosure] not in ALLOWED
    ]
    assert "payload" in unannotated


def test_services_are_the_documented_ones() -> None:
    """Property: the node exposes only catalog, answer, preview, budget and the two rounds of secure
    aggregation; the coordinator submit, nodes, catalog, preview and budget."""
    node = node_pb2.DESCRIPTOR.services_by_name["NodeService"]
    assert sorted(m.name for m in node.methods) == [
        "Answer",
        "AnswerSecure",
        "Explain",
        "GetBudget",
        "GetCatalog",
        "JoinSecureAggregation",
    ]
    coord = coordinator_pb2.DESCRIPTOR.services_by_name["CoordinatorService"]
    assert sorted(m.name for m in coord.methods) == [
        "Explain",
        "GetBudget",
        "GetCatalog",
        "ListNodes",
        "Submit",
    ]
