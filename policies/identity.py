"""Who is on the other end of a connection: the identity carried by an Accord certificate.

Every Accord certificate names its holder with one URI subject alternative name,
``accord://<role>/<name>``. That URI is authoritative; the subject CN/OU and DNS names are there
for humans and for TLS host-name checks only. This module only *loads* X.509 certificates (no key
generation): it is shared by the gRPC edge (:mod:`accord.rpc.transport`) and the development PKI
(:mod:`policies.pki`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from accord.config import NAME_PATTERN, NAME_RULE
from accord.errors import Unauthenticated

__all__ = [
    "NAME_PATTERN",
    "ROLES",
    "SERVER_NAME_SUFFIX",
    "URI_SCHEME",
    "Identity",
    "identity_from_certificate",
    "identity_from_pem",
    "load_certificate",
    "validity_problem",
]

ROLES = ("coordinator", "node", "analyst", "auditor")
URI_SCHEME = "accord"
SERVER_NAME_SUFFIX = "accord"
"""Clients verify a server by the DNS name ``<name>.<role>.accord`` (:attr:`Identity.server_name`)."""
_URI = re.compile(r"^accord://(?P<role>[a-z]+)/(?P<name>[^/]+)$")


@dataclass(frozen=True)
class Identity:
    """A party in the federation: its ``role`` (coordinator, node, analyst) and its ``name``."""

    role: str
    name: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} must be {NAME_RULE}")

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.role}/{self.name}"

    @property
    def server_name(self) -> str:
        """The DNS name a client verifies this party by when it serves: ``<name>.<role>.accord``.

        It holds the role as well as the name, so TLS host-name verification alone refuses a
        server whose certificate has the right name but the wrong role (an analyst certificate
        named ``county`` cannot pass for node ``county``). Names cannot contain dots, so the
        form is unambiguous.
        """
        return f"{self.name}.{self.role}.{SERVER_NAME_SUFFIX}"

    def __str__(self) -> str:
        return f"{self.role}/{self.name}"


def load_certificate(pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate, raising :class:`Unauthenticated` (``BAD_CERTIFICATE``) if unusable."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthenticated(
            "the certificate is not a valid PEM X.509 certificate", "BAD_CERTIFICATE"
        ) from None


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """The identity in ``cert``'s single ``accord://<role>/<name>`` URI SAN."""
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        raise Unauthenticated(
            "the certificate has no subject alternative names; issue it with `accord pki issue`",
            "BAD_CERTIFICATE",
        ) from None
    except ValueError:
        raise Unauthenticated("the certificate has malformed extensions", "BAD_CERTIFICATE") from None
    assert isinstance(san, x509.SubjectAlternativeName)
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("accord:")]
    if len(uris) != 1:
        raise Unauthenticated(
            f"the certificate must carry exactly one accord://<role>/<name> URI, found {len(uris)}; "
            "issue it with `accord pki issue`",
            "BAD_CERTIFICATE",
        )
    match = _URI.fullmatch(uris[0])
    if match is None:
        raise Unauthenticated(f"malformed identity URI {uris[0]!r}", "BAD_CERTIFICATE")
    try:
        return Identity(match["role"], match["name"])
    except ValueError as err:
        raise Unauthenticated(f"identity URI {uris[0]!r}: {err}", "BAD_CERTIFICATE") from None


def identity_from_pem(pem: bytes) -> Identity:
    """The identity of the PEM certificate ``pem`` (see :func:`identity_from_certificate`)."""
    return identity_from_certificate(load_certificate(pem))


def validity_problem(cert: x509.Certificate, now: datetime | None = None) -> str | None:
    """Why ``cert`` is not valid at ``now`` (expired / not yet valid), or ``None`` if it is."""
    now = now or datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        return f"is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    if now > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None
