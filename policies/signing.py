"""Signed queries: what an analyst signs, how, and how a node checks it, trusting nobody upstream.

The envelope (:class:`SignedQuery`) holds three byte strings, carried unchanged from the analyst's
client through the coordinator to every node:

* ``payload``: the query in canonical JSON (RFC 8785, JCS: UTF-8, no whitespace, members sorted by
  name; the members are all strings, so this is exactly Python's ``json.dumps(obj,
  sort_keys=True, separators=(",", ":"), ensure_ascii=False)``)::

      {"agreement":"","analyst":"alice","epsilon":"0.50","issued_at":"2026-12-03T06:48:38.123456Z",
       "query_id":"5b0e…","sql":"SELECT COUNT(*) FROM citizens","type":"accord.query.v1"}

  ``epsilon`` is the text the analyst typed; ``issued_at`` is UTC with exactly six decimals.
  A payload that is not in exactly this form (another member, a duplicate member, another order,
  spaces) is refused, so one signature has one meaning.
* ``signature``: the analyst's signature over :data:`SIGNATURE_CONTEXT` followed by the payload
  (ECDSA with SHA-256 for EC keys, Ed25519, or RSA PKCS#1 v1.5 with SHA-256, by the key in the
  certificate). The context keeps a query signature from being mistaken for anything else the key
  signs.
* ``certificate``: the analyst's X.509 certificate (DER).

:class:`QueryVerifier` checks, in this order: the certificate is well formed, chains to the
federation CA and is valid now; it carries the analyst role; the signature matches the payload;
the payload is canonical and names the certificate's analyst; it was signed within the freshness
window (``max_age`` back, ``clock_skew`` ahead). Each refusal is an
:class:`~accord.errors.Unauthenticated` or :class:`~accord.errors.PermissionDenied` with a stable
reason code and a message saying what to do. No grpc here: auditors' tools verify envelopes too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from accord.config import NAME_PATTERN
from accord.errors import ConfigError, InvalidQuery, PermissionDenied, Unauthenticated, Violation
from accord.policies.identity import Identity, identity_from_certificate, validity_problem
from accord.query.epsilon import Epsilon
from accord.query.model import QueryRequest

__all__ = [
    "PAYLOAD_TYPE",
    "SIGNATURE_CONTEXT",
    "QueryPayload",
    "QuerySigner",
    "QueryVerifier",
    "SignedQuery",
    "SigningKey",
    "VerifiedQuery",
    "sign_query",
]

PAYLOAD_TYPE = "accord.query.v1"
SIGNATURE_CONTEXT = b"accord signed query v1\n"
_MEMBERS = ("agreement", "analyst", "epsilon", "issued_at", "query_id", "sql", "type")
_ISSUED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_KNOWN_CHAINS = 1024

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

    def __post_init__(self) -> None:
        for name in ("query_id", "analyst", "sql", "epsilon", "agreement"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be text")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidQuery(f"{name} is not valid text", (Violation(name, "not UTF-8"),)) from None
        if self.issued_at.tzinfo is None:
            raise TypeError("issued_at must be timezone-aware")

    @property
    def issued_at_text(self) -> str:
        return self.issued_at.astimezone(UTC).strftime(_TIME_FORMAT)

    def _members(self) -> dict[str, str]:
        return {
            "agreement": self.agreement,
            "analyst": self.analyst,
            "epsilon": self.epsilon,
            "issued_at": self.issued_at_text,
            "query_id": self.query_id,
            "sql": self.sql,
            "type": PAYLOAD_TYPE,
        }

    def encode(self) -> bytes:
        """The canonical bytes that are signed (see the module docstring)."""
        return _canonical(self._members())

    def request_digest(self) -> bytes:
        """SHA-256 of what the analyst asks, whenever and however it was signed: the members but
        ``issued_at``, with ``epsilon`` in its exact form (``0.50`` and ``1/2`` ask the same). Two
        envelopes with the same digest ask the same query (a retry re-signed later); another SQL,
        epsilon or agreement does not. Raises :class:`InvalidQuery` for an epsilon that is not one."""
        members = self._members()
        del members["issued_at"]
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

        try:
            members: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise refuse("not UTF-8 JSON") from None
        if not isinstance(members, dict) or tuple(sorted(members)) != _MEMBERS:
            raise refuse(f"its members must be exactly {', '.join(_MEMBERS)}")
        if not all(isinstance(v, str) for v in members.values()):
            raise refuse("every member must be a string")
        if members["type"] != PAYLOAD_TYPE:
            raise refuse(f"type {members['type'][:40]!r} is not {PAYLOAD_TYPE}")
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
        )
        if payload.encode() != data:
            raise refuse("not in canonical form")
        return payload


@dataclass(frozen=True)
class SignedQuery:
    """The envelope: canonical payload bytes, the signature over them, the signer's certificate (DER).

    :meth:`to_bytes` is its stored form (each part preceded by its length, 4 bytes big-endian, in
    the order payload, signature, certificate) and :meth:`digest` the SHA-256 of that: how a node
    records, and an auditor later identifies, exactly what it was asked."""

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

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()


@dataclass(frozen=True)
class VerifiedQuery:
    """A signed query that passed every check: who signed it and what they asked."""

    analyst: Identity
    payload: QueryPayload
    request: QueryRequest


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
        self, query_id: str, sql: str, epsilon: str, agreement: str = "", now: datetime | None = None
    ) -> SignedQuery:
        """The signed envelope of this analyst's query, issued ``now`` (default: the clock)."""
        payload = QueryPayload(
            query_id, self.identity.name, sql, epsilon, now or datetime.now(UTC), agreement
        )
        return sign_query(payload, self._key, self._certificate)


def _signature_valid(certificate: x509.Certificate, signature: bytes, message: bytes) -> bool:
    key = certificate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


class QueryVerifier:
    """Checks signed queries against the federation's CA certificates (see the module docstring)."""

    def __init__(
        self, ca_certificates: Sequence[x509.Certificate], max_age: timedelta, clock_skew: timedelta
    ) -> None:
        if not ca_certificates:
            raise ValueError("at least one CA certificate is needed")
        self._store = Store(list(ca_certificates))
        self._cas = tuple(ca_certificates)
        self.max_age = max_age
        self.clock_skew = clock_skew
        # Verifying a chain costs more than the signature; a federation has a handful of analysts,
        # each with one certificate. Only chains that verified are kept; the dates of the
        # certificate and the CA are checked again on every query.
        self._chain_ok = functools.lru_cache(maxsize=_KNOWN_CHAINS)(self._verify_chain)

    def _verify_chain(self, der: bytes, at: datetime) -> x509.Certificate:
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise Unauthenticated(
                "the query's signer certificate is not a valid X.509 certificate; sign with the analyst "
                "certificate from `accord pki issue`",
                "SIGNER_CERTIFICATE_INVALID",
            ) from None
        problem = validity_problem(certificate, at)
        if problem is not None:
            raise Unauthenticated(
                f"the analyst certificate that signed the query {problem}; ask the federation's CA for a "
                "new one (`accord pki issue --role analyst`)",
                "SIGNER_CERTIFICATE_NOT_VALID",
            )
        try:
            verifier = PolicyBuilder().store(self._store).time(at).build_client_verifier()
            verifier.verify(certificate, [])
        except (VerificationError, ValueError):
            raise Unauthenticated(
                "the query is signed with a certificate this node does not trust (not issued by the "
                "federation's CA, or not usable for signing queries); sign with the analyst certificate "
                "the federation issued you",
                "SIGNER_NOT_TRUSTED",
            ) from None
        return certificate

    def verify(self, signed: SignedQuery, now: datetime | None = None) -> VerifiedQuery:
        """The verified query, or the refusal (see the module docstring for the order of checks)."""
        now = now or datetime.now(UTC)
        certificate = self._chain_ok(signed.certificate, now.replace(second=0, microsecond=0))
        problem = validity_problem(certificate, now)
        if problem is None:
            problem = next((p for ca in self._cas if (p := validity_problem(ca, now))), None)
        if problem is not None:
            raise Unauthenticated(
                f"the analyst certificate that signed the query (or the federation CA) {problem}; ask the "
                "federation's CA for a new certificate",
                "SIGNER_CERTIFICATE_NOT_VALID",
            )
        identity = identity_from_certificate(certificate)
        if identity.role != "analyst":
            raise PermissionDenied(
                f"the query is signed with a {identity.role} certificate ({identity}); nodes answer only "
                "queries signed by an analyst",
                "SIGNER_NOT_AN_ANALYST",
                {"signer": str(identity)},
            )
        if not _signature_valid(certificate, signed.signature, SIGNATURE_CONTEXT + signed.payload):
            raise Unauthenticated(
                f"the query's signature does not match its content: it was changed after analyst "
                f"{identity.name!r} signed it, or signed with another key; send it again from the Accord "
                "client (and if it keeps failing, tell the coordinator's operator)",
                "SIGNATURE_INVALID",
                {"signer": str(identity)},
            )
        payload = QueryPayload.decode(signed.payload)
        if payload.analyst != identity.name or not NAME_PATTERN.fullmatch(payload.analyst):
            raise Unauthenticated(
                f"the query names analyst {payload.analyst[:63]!r} but is signed by {identity.name!r}; each "
                "analyst signs their own queries",
                "ANALYST_MISMATCH",
                {"signer": str(identity)},
            )
        age = now - payload.issued_at
        if age > self.max_age + self.clock_skew:
            raise PermissionDenied(
                f"the query was signed at {payload.issued_at_text}, more than {_span(self.max_age)} ago "
                f"(allowing {_span(self.clock_skew)} of clock skew); nodes answer only fresh queries: send "
                "it again (the client signs it anew; the same query id returns the same answer)",
                "QUERY_NOT_FRESH",
                {"signer": str(identity), "issued_at": payload.issued_at_text},
            )
        if -age > self.clock_skew:
            raise PermissionDenied(
                f"the query was signed at {payload.issued_at_text}, {_span(-age)} in this node's future "
                f"(more than the {_span(self.clock_skew)} of clock skew allowed); check the clock of the "
                "computer that signed it",
                "QUERY_FROM_THE_FUTURE",
                {"signer": str(identity), "issued_at": payload.issued_at_text},
            )
        return VerifiedQuery(identity, payload, payload.request())


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
