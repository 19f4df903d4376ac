"""Signed queries for tests: an analyst's signer and a node's verifier from the session PKI, the
request messages that carry a signed query, and a node service built as the server builds it."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta

from cryptography import x509

from accord.node.config import DatasetConfig
from accord.node.duckdb import open_duckdb
from accord.node.service import NodeService
from accord.node.state import MemoryState, NodeState
from accord.policies.gate import PolicyGate
from accord.policies.signing import QuerySigner, SignedQuery
from accord.policies.verifying import QueryVerifier
from accord.protos import convert
from accord.protos.v1 import coordinator_pb2, node_pb2
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


def sign(
    who: QuerySigner | TlsFiles,
    sql: str,
    epsilon: str = "1",
    query_id: str | None = None,
    now: datetime | None = None,
) -> SignedQuery:
    by = signer(who) if isinstance(who, TlsFiles) else who
    return by.sign(query_id or str(uuid.uuid4()), sql, epsilon, now=now)


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
) -> NodeService:
    """A node's answer path over ``datasets`` in DuckDB, as :func:`accord.node.server.build_service`
    assembles it (memory state unless ``state`` is given)."""
    schemas = tuple(d.schema for d in datasets)
    gate = PolicyGate(name, coordinators, {s.name: s for s in schemas})
    return NodeService(name, open_duckdb(datasets), schemas, gate, verifier(pki), state or MemoryState())
