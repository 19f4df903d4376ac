"""Signed queries: what an analyst signs, how, and how a node checks it, trusting nobody upstream.

The envelope (:class:`SignedQuery`) holds three byte strings, carried unchanged from the analyst's
client through the coordinator to every node:

* ``payload``: the query in canonical JSON (RFC 8785, JCS: UTF-8, no whitespace, members sorted by
  name; the members are all strings, so this is exactly Python's ``json.dumps(obj,
  sort_keys=True, separators=(",", ":"), ensure_ascii=False)``)::

      {"agreement":"","analyst":"alice","coordinator":"coordinator","epsilon":"0.50",
       "issued_at":"2026-12-03T06:48:38.123456Z","query_id":"5b0e…",
       "sql":"SELECT COUNT(*) FROM citizens","type":"accord.query.v1"}

  ``type`` says what the analyst asks: ``accord.query.v1`` (answer the query, spending its
  epsilon), ``accord.explain.v1`` (preview its cost and accuracy, spending nothing) or
  ``accord.budget.v1`` (show the analyst's budget; ``sql`` and ``epsilon`` empty). A node acts on
  a payload only as the type it was signed for, so a preview can never be replayed as a query.
  ``epsilon`` is the text the analyst typed; ``issued_at`` is UTC with exactly six decimals;
  ``coordinator`` names the coordinator the analyst sends it through (a node answers it only from
  that coordinator, so another coordinator of the federation cannot replay it); at most
  :data:`MAX_PAYLOAD_BYTES` bytes.
  A payload that is not in exactly this form (another member, a duplicate member, another order,
  spaces) is refused, so one signature has one meaning.
* ``signature``: the analyst's signature over :data:`SIGNATURE_CONTEXT` followed by the payload
  (ECDSA with SHA-256 for EC keys, Ed25519, or RSA PKCS#1 v1.5 with SHA-256, by the key in the
  certificate). The context keeps a query signature from being mistaken for anything else the key
  signs.
* ``certificate``: the analyst's X.509 certificate (DER).

A node checks envelopes with :mod:`accord.policies.verifying`. No grpc here: auditors' tools read
envelopes too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from accord.errors import ConfigError, InvalidQuery, Unauthenticated, Violation
from accord.policies.identity import identity_from_certificate
from accord.query.epsilon import Epsilon
from accord.query.model import QUERY_ID_PATTERN, QueryRequest
from accord.query.sql import MAX_SQL_LENGTH

__all__ = [
    "AGREEMENT_ID",
    "MAX_PAYLOAD_BYTES",
    "PAYLOAD_KINDS",
    "PAYLOAD_TYPE",
    "SIGNATURE_CONTEXT",
    "QueryPayload",
    "QuerySigner",
    "SignedQuery",
    "SigningKey",
    "sign_query",
]

PAYLOAD_KINDS = ("query", "explain", "budget")
"""What a signed payload may ask (its ``type`` is ``accord.<kind>.v1``)."""
PAYLOAD_TYPE = "accord.query.v1"
_TYPES = {f"accord.{kind}.v1": kind for kind in PAYLOAD_KINDS}
SIGNATURE_CONTEXT = b"accord signed query v1\n"
_MEMBERS = ("agreement", "analyst", "coordinator", "epsilon", "issued_at", "query_id", "sql", "type")
MAX_PAYLOAD_BYTES = 4 * MAX_SQL_LENGTH + 4096
"""The longest payload read (the longest SQL text, every character a 4-byte one, and the rest)."""
AGREEMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""What an agreement id looks like (1-128 letters, digits, '.', '_', ':' or '-')."""
_AGREEMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,127})?$")
_ISSUED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
"""The private keys an analyst may sign with (the kinds a certificate's key may be)."""


def _canonical(members: dict[str, str]) -> bytes:
    return json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class QueryPayload:
    """What the analyst signs. ``epsilon`` is the text as typed; ``issued_at`` is UTC."""

    query_id: str
    analyst: str
    sql: str
    epsilon: str
    issued_at: datetime
    agreement: str = ""
    coordinator: str = ""
    kind: str = "query"
    """One of :data:`PAYLOAD_KINDS`."""

    def __post_init__(self) -> None:
        if self.kind not in PAYLOAD_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PAYLOAD_KINDS)}")
        for name in ("query_id", "analyst", "sql", "epsilon", "agreement", "coordinator"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be text")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidQuery(f"{name} is not valid text", (Violation(name, "not UTF-8"),)) from None
        if self.issued_at.tzinfo is None:
            raise TypeError("issued_at must be timezone-aware")
        if not QUERY_ID_PATTERN.fullmatch(self.query_id):  # every kind: it is logged and stored
            raise InvalidQuery(
                "query_id must be 1-128 letters, digits, '.', '_', ':' or '-' (starting with a letter or "
                "digit); the Accord client uses a UUID",
                (Violation("query_id", "missing, too long or with other characters"),),
            )
        if not _AGREEMENT.fullmatch(self.agreement):
            raise InvalidQuery(
                "an agreement id is 1-128 letters, digits, '.', '_', ':' or '-'; use the id the agreement "
                "publishes",
                (Violation("agreement", "malformed agreement id"),),
            )

    @property
    def issued_at_text(self) -> str:
        return self.issued_at.astimezone(UTC).strftime(_TIME_FORMAT)

    def _members(self) -> dict[str, str]:
        return {
            "agreement": self.agreement,
            "analyst": self.analyst,
            "coordinator": self.coordinator,
            "epsilon": self.epsilon,
            "issued_at": self.issued_at_text,
            "query_id": self.query_id,
            "sql": self.sql,
            "type": f"accord.{self.kind}.v1",
        }

    def encode(self) -> bytes:
        """The canonical bytes that are signed (see the module docstring)."""
        return _canonical(self._members())

    def request_digest(self) -> bytes:
        """SHA-256 of what the analyst asks, whenever, however and through whichever coordinator it
        was signed: the members but ``issued_at`` and ``coordinator``, with ``epsilon`` in its exact
        form (``0.50`` and ``1/2`` ask the same). Two envelopes with the same digest ask the same
        query (a retry re-signed later, or sent through a standby coordinator); another SQL, epsilon
        or agreement does not. Raises :class:`InvalidQuery` for an epsilon that is not one."""
        members = self._members()
        del members["issued_at"], members["coordinator"]
        members["epsilon"] = str(Epsilon.parse(self.epsilon))
        return hashlib.sha256(_canonical(members)).digest()

    def request(self) -> QueryRequest:
        """The query the payload asks, checked (query id, epsilon)."""
        return QueryRequest(self.query_id, self.sql, Epsilon.parse(self.epsilon), self.agreement)

    @staticmethod
    def decode(data: bytes) -> QueryPayload:
        """The payload in ``data``, which must be canonical (:class:`InvalidQuery` otherwise)."""

        def refuse(why: str) -> InvalidQuery:
            return InvalidQuery(
                f"the signed query is malformed ({why}); sign queries with the Accord client",
                (Violation("query", f"malformed payload: {why}"),),
            )

        if len(data) > MAX_PAYLOAD_BYTES:
            raise refuse(f"longer than {MAX_PAYLOAD_BYTES} bytes")
        try:
            members: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise refuse("not UTF-8 JSON") from None
        if not isinstance(members, dict) or tuple(sorted(members)) != _MEMBERS:
            raise refuse(f"its members must be exactly {', '.join(_MEMBERS)}")
        if not all(isinstance(v, str) for v in members.values()):
            raise refuse("every member must be a string")
        kind = _TYPES.get(members["type"])
        if kind is None:
            raise refuse(f"type {members['type'][:40]!r} is not one of {', '.join(_TYPES)}")
        if not _ISSUED_AT.fullmatch(members["issued_at"]):
            raise refuse("issued_at must be UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ")
        try:
            issued_at = datetime.strptime(members["issued_at"], _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise refuse("issued_at is not a date") from None
        payload = QueryPayload(
            query_id=members["query_id"],
            analyst=members["analyst"],
            sql=members["sql"],
            epsilon=members["epsilon"],
            issued_at=issued_at,
            agreement=members["agreement"],
            coordinator=members["coordinator"],
            kind=kind,
        )
        if payload.encode() != data:
            raise refuse("not in canonical form")
        return payload


@dataclass(frozen=True)
class SignedQuery:
    """The envelope: canonical payload bytes, the signature over them, the signer's certificate (DER).

    :meth:`to_bytes` is its stored form (each part preceded by its length, 4 bytes big-endian, in
    the order payload, signature, certificate). :meth:`payload_digest`, the SHA-256 of the payload,
    identifies what the analyst signed: the payload has exactly one accepted byte form, while
    signatures (ECDSA's ``s`` or ``n - s``) and certificate encodings can be altered without
    invalidating them, so the envelope's bytes are evidence, not an identity."""

    payload: bytes
    signature: bytes
    certificate: bytes

    def to_bytes(self) -> bytes:
        return b"".join(
            len(part).to_bytes(4, "big") + part for part in (self.payload, self.signature, self.certificate)
        )

    @staticmethod
    def from_bytes(data: bytes) -> SignedQuery:
        parts: list[bytes] = []
        at = 0
        for _ in range(3):
            if at + 4 > len(data):
                raise ValueError("truncated signed query")
            size = int.from_bytes(data[at : at + 4], "big")
            parts.append(data[at + 4 : at + 4 + size])
            at += 4 + size
            if at > len(data):
                raise ValueError("truncated signed query")
        if at != len(data):
            raise ValueError("trailing bytes after the signed query")
        return SignedQuery(*parts)

    def payload_digest(self) -> bytes:
        return hashlib.sha256(self.payload).digest()


def sign_query(payload: QueryPayload, key: SigningKey, certificate: x509.Certificate) -> SignedQuery:
    """Sign ``payload`` with the analyst's ``key``; ``certificate`` is the key's certificate."""
    data = payload.encode()
    message = SIGNATURE_CONTEXT + data
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:  # pragma: no cover - the type admits nothing else
        raise TypeError(f"cannot sign with a {type(key).__name__}")
    return SignedQuery(data, signature, certificate.public_bytes(Encoding.DER))


class QuerySigner:
    """Signs an analyst's queries with their key. Refuses a key that does not belong to the
    certificate, and a certificate that is not an analyst's (nodes would refuse what it signs)."""

    def __init__(self, key: SigningKey, certificate: x509.Certificate) -> None:
        if not isinstance(key, SigningKey):
            raise ConfigError(f"a {type(key).__name__} cannot sign queries; use an EC, Ed25519 or RSA key")
        spki = PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(Encoding.DER, spki) != certificate.public_key().public_bytes(
            Encoding.DER, spki
        ):
            raise ConfigError(
                "the private key does not belong to the certificate; use the pair issued together"
            )
        try:
            identity = identity_from_certificate(certificate)
        except Unauthenticated as err:
            raise ConfigError(f"the certificate cannot sign queries: {err.message}") from None
        if identity.role != "analyst":
            raise ConfigError(
                f"the certificate is a {identity.role} certificate ({identity}); queries are signed with an "
                "analyst certificate (`accord pki issue --role analyst`)"
            )
        self.identity = identity
        self._key = key
        self._certificate = certificate

    @staticmethod
    def from_pem(key_pem: bytes, certificate_pem: bytes) -> QuerySigner:
        """The signer of the PEM private key and certificate (an analyst's ``.key`` and ``.pem``)."""
        try:
            key = load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigError("the private key is not an unencrypted PEM private key") from None
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            raise ConfigError("the certificate is not a PEM X.509 certificate") from None
        if not isinstance(key, SigningKey):
            raise ConfigError(f"a {type(key).__name__} cannot sign queries; use an EC, Ed25519 or RSA key")
        return QuerySigner(key, certificate)

    def sign(
        self,
        query_id: str,
        sql: str,
        epsilon: str,
        agreement: str = "",
        now: datetime | None = None,
        coordinator: str = "coordinator",
        kind: str = "query",
    ) -> SignedQuery:
        """The signed envelope of this analyst's request of ``kind`` (a query, a preview, a budget
        request) through ``coordinator``, issued ``now`` (default: the clock)."""
        issued_at = now or datetime.now(UTC)
        payload = QueryPayload(
            query_id, self.identity.name, sql, epsilon, issued_at, agreement, coordinator, kind
        )
        return sign_query(payload, self._key, self._certificate)
