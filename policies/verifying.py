"""Verifying signed queries: what a node checks before it looks at a query, trusting nobody upstream.

:class:`QueryVerifier` checks, in this order: the certificate is well formed, chains to the
federation CA (the X.509 verifier of ``cryptography``) and is valid now; it carries the analyst
role; the signature matches the payload (:data:`~accord.policies.signing.SIGNATURE_CONTEXT`
followed by the payload bytes); the payload is canonical and names the certificate's analyst; it
was signed within the freshness window (``max_age`` back, ``clock_skew`` ahead). Each refusal is
an :class:`~accord.errors.Unauthenticated` or :class:`~accord.errors.PermissionDenied` with a
stable reason code and a message saying what to do. (Writing and verifying live in separate
modules, as in sigstore.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from accord.errors import PermissionDenied, Unauthenticated
from accord.policies.identity import Identity, identity_from_certificate, validity_problem
from accord.policies.revocation import CrlFile
from accord.policies.signing import SIGNATURE_CONTEXT, QueryPayload, SignedQuery
from accord.query.model import QueryRequest

__all__ = ["QueryVerifier", "VerifiedQuery", "VerifiedRequest", "signature_valid"]

_KNOWN_CHAINS = 1024


@dataclass(frozen=True)
class VerifiedRequest:
    """A signed request that passed every check: who signed it and what they signed."""

    analyst: Identity
    payload: QueryPayload


@dataclass(frozen=True)
class VerifiedQuery(VerifiedRequest):
    """A signed query (or preview) that passed every check, with the query it asks."""

    request: QueryRequest


_SUPPORTED_KEYS = (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)


def _check_dates(path: Sequence[x509.Certificate], now: datetime) -> None:
    """Refuse if a certificate of the chain (the signer's first, then its CA) is not valid ``now``."""
    for i, cert in enumerate(path):
        problem = validity_problem(cert, now)
        if problem is None:
            continue
        whose = "the analyst certificate that signed the query" if i == 0 else "the CA that issued it"
        raise Unauthenticated(
            f"{whose} {problem}; ask the federation's CA for a new certificate",
            "SIGNER_CERTIFICATE_NOT_VALID",
        )


def signature_valid(certificate: x509.Certificate, signature: bytes, message: bytes) -> bool:
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


@dataclass(frozen=True)
class _Chain:
    """A signer certificate that chained to a federation CA, the chain it took, and its identity."""

    certificate: x509.Certificate
    path: tuple[x509.Certificate, ...]
    identity: Identity


class QueryVerifier:
    """Checks signed queries against the federation's CA certificates (see the module docstring)."""

    def __init__(
        self,
        ca_certificates: Sequence[x509.Certificate],
        max_age: timedelta,
        clock_skew: timedelta,
        crl: CrlFile | None = None,
    ) -> None:
        if not ca_certificates:
            raise ValueError("at least one CA certificate is needed")
        self._crl = crl
        self._store = Store(list(ca_certificates))
        self.max_age = max_age
        self.clock_skew = clock_skew
        # Verifying a chain costs more than the signature; a federation has a handful of analysts,
        # each with one certificate. Chains that verified are kept by the certificate's bytes; the
        # dates of every certificate of the chain are checked again on every query.
        self._chains: dict[bytes, _Chain] = {}
        self._lock = threading.Lock()

    def _chain(self, der: bytes, now: datetime) -> _Chain:
        with self._lock:
            known = self._chains.get(der)
        if known is not None:
            return known
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise Unauthenticated(
                "the query's signer certificate is not a valid X.509 certificate; sign with the analyst "
                "certificate from `accord pki issue`",
                "SIGNER_CERTIFICATE_INVALID",
            ) from None
        if not isinstance(certificate.public_key(), _SUPPORTED_KEYS):
            raise Unauthenticated(
                f"the query's signer certificate has a {type(certificate.public_key()).__name__}, which "
                "cannot sign queries; use an EC, Ed25519 or RSA key",
                "SIGNER_CERTIFICATE_INVALID",
            )
        _check_dates((certificate,), now)
        try:
            verified = (
                PolicyBuilder().store(self._store).time(now).build_client_verifier().verify(certificate, [])
            )
        except (VerificationError, ValueError):
            raise Unauthenticated(
                "the query is signed with a certificate this node does not trust (not issued by the "
                "federation's CA, a CA that is not valid now, or not usable for signing queries); sign "
                "with the analyst certificate the federation issued you",
                "SIGNER_NOT_TRUSTED",
            ) from None
        chain = _Chain(certificate, tuple(verified.chain), identity_from_certificate(certificate))
        with self._lock:
            if len(self._chains) >= _KNOWN_CHAINS:
                self._chains.clear()
            self._chains[der] = chain
        return chain

    def node_certificate(self, der: bytes, name: str, now: datetime | None = None) -> x509.Certificate:
        """The certificate ``der`` if it is node ``name``'s: chained to the federation's CA, valid
        now, not revoked, of role ``node`` (what secure aggregation's key shares are signed with)."""
        now = now or datetime.now(UTC)
        try:
            chain = self._chain(der, now)
            _check_dates(chain.path, now)
        except Unauthenticated as err:
            raise Unauthenticated(
                f"participant {name!r} signed with a certificate this federation does not accept "
                f"({err.message}); its operator needs a node certificate from the federation's CA",
                "PARTICIPANT_NOT_TRUSTED",
                {"participant": name},
            ) from None
        identity = chain.identity
        if self._crl is not None and self._crl.revokes(chain.certificate):
            raise Unauthenticated(
                f"participant {name!r} signed with a revoked certificate",
                "PARTICIPANT_NOT_TRUSTED",
                {"participant": name},
            )
        if identity.role != "node" or identity.name != name:
            raise PermissionDenied(
                f"a key share for participant {name!r} is signed by {identity}; each participant signs its "
                "own with its node certificate",
                "PARTICIPANT_NOT_TRUSTED",
                {"participant": name},
            )
        return chain.certificate

    def verify(self, signed: SignedQuery, now: datetime | None = None, kind: str = "query") -> VerifiedQuery:
        """The verified query (or, with ``kind="explain"``, preview), or the refusal (see the module
        docstring for the order of checks)."""
        verified = self.verify_request(signed, kind, now)
        return VerifiedQuery(verified.analyst, verified.payload, verified.payload.request())

    def verify_request(self, signed: SignedQuery, kind: str, now: datetime | None = None) -> VerifiedRequest:
        """The verified request of ``kind`` (a payload signed for another kind is refused)."""
        now = now or datetime.now(UTC)
        chain = self._chain(signed.certificate, now)
        _check_dates(chain.path, now)  # the certificate and the CA it chained to, at this moment
        certificate, identity = chain.certificate, chain.identity
        if self._crl is not None and self._crl.revokes(certificate):
            raise Unauthenticated(
                f"the query is signed with the certificate of {identity}, which has been revoked; the "
                "analyst needs a new certificate from the federation's CA",
                "SIGNER_REVOKED",
                {"signer": str(identity)},
            )
        if identity.role != "analyst":
            raise PermissionDenied(
                f"the query is signed with a {identity.role} certificate ({identity}); nodes answer only "
                "queries signed by an analyst",
                "SIGNER_NOT_AN_ANALYST",
                {"signer": str(identity)},
            )
        if not signature_valid(certificate, signed.signature, SIGNATURE_CONTEXT + signed.payload):
            raise Unauthenticated(
                f"the query's signature does not match its content: it was changed after analyst "
                f"{identity.name!r} signed it, or signed with another key; send it again from the Accord "
                "client (and if it keeps failing, tell the coordinator's operator)",
                "SIGNATURE_INVALID",
                {"signer": str(identity)},
            )
        payload = QueryPayload.decode(signed.payload)
        if payload.analyst != identity.name:
            raise Unauthenticated(
                f"the query names analyst {payload.analyst[:63]!r} but is signed by {identity.name!r}; each "
                "analyst signs their own queries",
                "ANALYST_MISMATCH",
                {"signer": str(identity)},
            )
        if payload.kind != kind:
            raise PermissionDenied(
                f"analyst {identity.name!r} signed this as a {payload.kind} request, not a {kind} request; "
                "nodes act on a signed request only as what it was signed for",
                "WRONG_REQUEST_KIND",
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
        return VerifiedRequest(identity, payload)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
