"""Who called: the identity in the client certificate of the TLS connection, and role checks.

Who called is read from the TLS auth context (:func:`peer_identity`), never from request metadata.
The certificate's identity is its ``accord://<role>/<name>`` URI (see
:mod:`accord.policies.identity`).
"""

from __future__ import annotations

import functools
from datetime import datetime

import grpc
from cryptography import x509

from accord.errors import PermissionDenied, Unauthenticated
from accord.policies.identity import Identity, identity_from_certificate, load_certificate, validity_problem

__all__ = ["peer_certificate", "peer_identity", "require_role"]

_AUTH_CERT_KEY = "x509_pem_cert"
_KNOWN_CERTIFICATES = 1024
"""Client certificates whose parsed form is kept (a federation has a handful of parties)."""


def peer_identity(context: grpc.ServicerContext, now: datetime | None = None) -> Identity:
    """The caller's identity, from the client certificate in the TLS auth context.

    Raises :class:`Unauthenticated` when there is no client certificate, it has no valid
    ``accord://`` identity, or it is outside its validity period (gRPC checks the chain; this is
    a second, defensive check of the dates).
    """
    pem = _peer_pem(context)
    problem = validity_problem(_certificate(pem), now)  # checked on every call, against the clock
    if problem is not None:
        raise Unauthenticated(f"the client certificate {problem}", "CERTIFICATE_NOT_VALID")
    return _identity(pem)


def peer_certificate(context: grpc.ServicerContext) -> x509.Certificate:
    """The caller's client certificate (parsed once per distinct certificate)."""
    return _certificate(_peer_pem(context))


def _peer_pem(context: grpc.ServicerContext) -> bytes:
    auth = context.auth_context() or {}
    pems = auth.get(_AUTH_CERT_KEY) or []
    if not pems:
        raise Unauthenticated(
            "no client certificate; connect over mTLS with a certificate from the federation CA",
            "NO_CLIENT_CERTIFICATE",
        )
    pem: bytes = pems[0]
    return pem


# The same few client certificates arrive on every call: parse each once. Both are pure functions
# of the PEM bytes (gRPC has already verified the chain); only successes are cached, so a bad
# certificate is refused with the same error every time.
@functools.lru_cache(maxsize=_KNOWN_CERTIFICATES)
def _certificate(pem: bytes) -> x509.Certificate:
    return load_certificate(pem)


@functools.lru_cache(maxsize=_KNOWN_CERTIFICATES)
def _identity(pem: bytes) -> Identity:
    return identity_from_certificate(_certificate(pem))


def require_role(context: grpc.ServicerContext, *roles: str) -> Identity:
    """The caller's identity, provided its role is one of ``roles``; else :class:`PermissionDenied`."""
    identity = peer_identity(context)
    if identity.role not in roles:
        needed = " or ".join(roles)
        raise PermissionDenied(
            f"{identity} may not call this; it needs a {needed} certificate",
            "WRONG_ROLE",
            {"caller": str(identity), "required_role": needed},
        )
    return identity
