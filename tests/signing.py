"""Signed queries for tests: an analyst's signer and a node's verifier from the session PKI, the
request messages that carry a signed query, and a node service built as the server builds it."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from accord.node.config import DatasetConfig
from accord.node.consent import ConsentRegister
from accord.node.duckdb import open_duckdb
from accord.node.service import NodeService
from accord.node.state import MemoryState, NodeState
from accord.policies.agreements import Agreement, Budget, DatasetGrant, FieldUse
from accord.policies.decision import Decision
from accord.policies.gate import PolicyGate
from accord.policies.signing import SIGNATURE_CONTEXT, QuerySigner, SignedQuery
from accord.policies.verifying import QueryVerifier
from accord.protos import convert
from accord.protos.v1 import coordinator_pb2, node_pb2
from accord.query.epsilon import Epsilon
from accord.query.schema import DatasetSchema
from accord.rpc.fairness import FairnessConfig
from accord.rpc.transport import TlsFiles
from tests.conftest import TestPki


@functools.cache
def signer(tls: TlsFiles) -> QuerySigner:
    """The signer of the certificate and key in ``tls`` (``pki.analyst("alice")``)."""
    files = tls.read()
    return QuerySigner.from_pem(files.key, files.cert)


def verifier(pki: TestPki, max_age: float = 300, skew: float = 60) -> QueryVerifier:
    """What a node of the session federation checks signed queries with."""
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    return QueryVerifier([ca], timedelta(seconds=max_age), timedelta(seconds=skew))


OPEN = "open"
"""The agreement :func:`node_service` holds unless told otherwise (see :func:`open_agreement`)."""


def sign(
    who: QuerySigner | TlsFiles,
    sql: str,
    epsilon: str = "1",
    query_id: str | None = None,
    now: datetime | None = None,
    agreement: str = OPEN,
    kind: str = "query",
) -> SignedQuery:
    by = signer(who) if isinstance(who, TlsFiles) else who
    return by.sign(query_id or str(uuid.uuid4()), sql, epsilon, agreement, now=now, kind=kind)


def open_agreement(
    schemas: Mapping[str, DatasetSchema],
    node: str = "n",
    ident: str = OPEN,
    fields: Mapping[str, tuple[str, ...]] | None = None,
    analysts: tuple[str, ...] = ("alice", "bob"),
    budget: tuple[str, str, str] = ("1000000", "1000000", "100"),
    min_group_size: int = 0,
    consent: str = "opt-out",
    purpose: str = "TESTING",
    valid: tuple[date, date] = (date(2000, 1, 1), date(2999, 12, 31)),
) -> Agreement:
    """An agreement of ``node`` sharing, per dataset, ``fields`` (default: every declared field)
    in every way each supports; ``budget`` is (per_analyst, total, per_query)."""
    grants = {}
    for name, schema in schemas.items():
        uses: dict[str, frozenset[FieldUse]] = {}
        for spec in schema.columns:
            if spec.name == schema.privacy_unit or (fields is not None and spec.name not in fields):
                continue
            allowed = {FieldUse.COUNT, FieldUse.FILTER}
            if spec.lower is not None and spec.type.value in ("integer", "float"):
                allowed |= {FieldUse.SUM, FieldUse.AVG}
            if spec.categories is not None:
                allowed.add(FieldUse.GROUP_BY)
            uses[spec.name] = frozenset(allowed)
        grants[name] = DatasetGrant(name, uses)
    per_analyst, total, per_query = (Epsilon(Fraction(x)) for x in budget)
    return Agreement(
        id=ident,
        title=f"test agreement {ident}",
        purpose_code=purpose,
        purpose="testing",
        lawful_basis="test",
        consent=consent,
        valid_from=valid[0],
        valid_until=valid[1],
        review_date=valid[1],
        nodes=(node,),
        organisations=(),
        analysts=analysts,
        budget=Budget(per_analyst, total, per_query),
        datasets=grants,
        min_group_size=min_group_size,
    )


def answer_request(signed: SignedQuery) -> node_pb2.AnswerRequest:
    return node_pb2.AnswerRequest(query=convert.signed_query_to_pb(signed))


def submit_request(signed: SignedQuery, require_all: bool = False) -> coordinator_pb2.SubmitRequest:
    return coordinator_pb2.SubmitRequest(query=convert.signed_query_to_pb(signed), require_all=require_all)


def node_service(
    pki: TestPki,
    datasets: tuple[DatasetConfig, ...],
    name: str = "n",
    state: NodeState | None = None,
    coordinators: tuple[str, ...] = ("coordinator",),
    agreements: tuple[Agreement, ...] | None = None,
    consent: ConsentRegister | None = None,
    max_epsilon: str = "100",
    today: Callable[[], date] | None = None,
    on_decision: Callable[[Decision], None] | None = None,
) -> NodeService:
    """A node's answer path over ``datasets`` in DuckDB, as :func:`accord.node.server.build_service`
    assembles it (memory state unless ``state`` is given; the agreement :data:`OPEN` unless
    ``agreements`` are given)."""
    schemas = tuple(d.schema for d in datasets)
    by_name = {s.name: s for s in schemas}
    held = agreements if agreements is not None else (open_agreement(by_name, name),)
    gate = PolicyGate(
        name,
        coordinators,
        by_name,
        {a.id: a for a in held},
        Epsilon.parse(max_epsilon),
        **({"today": today} if today is not None else {}),
    )
    extra: dict[str, Any] = {"on_decision": on_decision} if on_decision is not None else {}
    extra["fairness"] = FairnessConfig(max_in_flight=10_000, per_minute=1_000_000, burst=1_000_000)
    return NodeService(
        name,
        open_duckdb(datasets),
        schemas,
        gate,
        verifier(pki),
        state or MemoryState(name),
        consent,
        **extra,
    )


def sign_with_query_id(tls: TlsFiles, sql: str, query_id: str, epsilon: str = "1") -> SignedQuery:
    """What a client that skips Accord's own checks sends: a payload whose ``query_id`` is exactly
    ``query_id`` (newlines, escapes, any length), validly signed by the analyst of ``tls``."""
    placeholder = "placeholder-query-id"
    good = sign(tls, sql, epsilon, query_id=placeholder)
    data = good.payload.replace(
        f'"query_id":"{placeholder}"'.encode(), b'"query_id":' + json.dumps(query_id).encode()
    )
    assert data != good.payload
    key = load_pem_private_key(tls.read().key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return SignedQuery(data, key.sign(SIGNATURE_CONTEXT + data, ec.ECDSA(hashes.SHA256())), good.certificate)
