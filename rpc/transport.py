"""The gRPC edge of every Accord connection: mutual TLS with the federation CA.

Servers require a client certificate (``require_client_auth=True``) issued by the federation CA;
clients verify the server against the CA *and* against the party they expect it to be: the DNS SAN
``<name>.<role>.accord`` (:attr:`Identity.server_name`), so a certificate with the right name but
the wrong role (an analyst named ``county``, a node named ``coordinator``) fails the handshake.
Who called is read from the TLS auth context (:mod:`accord.rpc.identity`), never from request metadata.

Message sizes are bounded on both sides by :data:`MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from accord.errors import ConfigError, Unauthenticated
from accord.policies.identity import SERVER_NAME_SUFFIX, Identity, identity_from_certificate, validity_problem

__all__ = [
    "MAX_MESSAGE_BYTES",
    "TlsBytes",
    "TlsFiles",
    "channel_credentials",
    "channel_options",
    "check_certificate_files",
    "dns_names",
    "secure_channel",
    "server_credentials",
]

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest message either side sends or accepts (4 MiB); releases are small aggregates."""


@dataclass(frozen=True)
class TlsBytes:
    """The PEM contents of a :class:`TlsFiles` triple."""

    cert: bytes
    key: bytes
    ca: bytes


@dataclass(frozen=True)
class TlsFiles:
    """Where one party's certificate, private key and the federation CA certificate live (PEM),
    and optionally the federation's certificate revocation list (``crl``, see
    :mod:`accord.policies.revocation`)."""

    cert: Path
    key: Path
    ca: Path
    crl: Path | None = None

    def __post_init__(self) -> None:
        for field in ("cert", "key", "ca"):
            object.__setattr__(self, field, Path(getattr(self, field)))
        if self.crl is not None:
            object.__setattr__(self, "crl", Path(self.crl))

    def read(self) -> TlsBytes:
        """Read all three files, raising :class:`ConfigError` naming any missing/unreadable/empty one."""
        return TlsBytes(
            cert=_read(self.cert, "certificate"),
            key=_read(self.key, "private key"),
            ca=_read(self.ca, "CA certificate"),
        )


def _read(path: Path, what: str) -> bytes:
    hint = "create one with `accord pki init` or `accord pki issue`"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist; {hint}") from None
    except OSError as err:
        raise ConfigError(
            f"{what} file {path} cannot be read ({err.strerror}); check its permissions"
        ) from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what} file {path} is not a PEM file; {hint}")
    return data


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server-side mTLS credentials: present our certificate, demand one from the CA of every client."""
    files = tls.read()
    return grpc.ssl_server_credentials(
        [(files.key, files.cert)], root_certificates=files.ca, require_client_auth=True
    )


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """Client-side mTLS credentials: trust only the federation CA and present our certificate."""
    files = tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca, private_key=files.key, certificate_chain=files.cert
    )


def channel_options(expected: Identity) -> list[tuple[str, Any]]:
    """Channel options: verify the server as the party ``expected`` and bound message sizes."""
    return [
        ("grpc.ssl_target_name_override", expected.server_name),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]


def secure_channel(
    address: str,
    tls: TlsFiles,
    expected: Identity,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """An mTLS channel to ``address`` (``host:port``) that only accepts the server ``expected``.

    The server certificate must chain to the federation CA and carry ``expected.server_name``
    (``<name>.<role>.accord``) as a DNS SAN, so neither another node nor a party of another role
    can impersonate it even though all certificates come from the same CA. ``options`` are added
    last and may override the defaults.
    """
    return grpc.secure_channel(
        address, channel_credentials(tls), options=[*channel_options(expected), *options]
    )


def check_certificate_files(
    tls: TlsFiles, now: datetime | None = None, expected: Identity | None = None
) -> Identity:
    """Check at start-up that ``tls`` is usable; return the identity it carries.

    The certificate and CA must be readable PEM, currently valid, the certificate must have been
    issued by the CA and carry an ``accord://`` identity, and the key must belong to it. With
    ``expected`` (a server checking its own certificate), the identity must be exactly that party
    and the certificate must carry the DNS name clients verify (:attr:`Identity.server_name`) and
    no wildcard name. Every problem is a :class:`ConfigError` that says which file is wrong and
    how to fix it.
    """
    files = tls.read()
    now = now or datetime.now(UTC)
    cert = _parse(files.cert, tls.cert)
    ca = _parse(files.ca, tls.ca)
    fix = "issue a new one with `accord pki issue --dir DIR --role ROLE --name NAME`"
    ca_problem = validity_problem(ca, now)
    if ca_problem is not None:
        raise ConfigError(
            f"CA certificate {tls.ca} {ca_problem}; create a new federation with `accord pki init`"
        )
    problem = validity_problem(cert, now)
    if problem is not None:
        raise ConfigError(f"certificate {tls.cert} {problem}; {fix}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"certificate {tls.cert} was not issued by the CA in {tls.ca}; "
            f"use the CA of your federation or {fix}"
        ) from None
    _check_key_matches(files.key, tls.key, cert, tls.cert)
    try:
        identity = identity_from_certificate(cert)
    except Unauthenticated as err:
        raise ConfigError(f"certificate {tls.cert}: {err.message}") from None
    if expected is not None:
        _check_serves_as(cert, identity, expected, tls.cert)
    return identity


def _check_serves_as(cert: x509.Certificate, identity: Identity, expected: Identity, path: Path) -> None:
    """``cert`` (carrying ``identity``) may serve as ``expected``: same role and name, and the DNS
    name clients verify, with no wildcard that would let it answer for other parties."""
    reissue = f"issue one with `accord pki issue --role {expected.role} --name {expected.name}`"
    if identity != expected:
        raise ConfigError(
            f"certificate {path} is for {identity}, but this server is {expected}; {reissue} "
            "(or fix the name in the config)"
        )
    names = dns_names(cert)
    wildcards = [n for n in names if "*" in n]
    if wildcards:
        raise ConfigError(
            f"certificate {path} has wildcard DNS name(s) {', '.join(wildcards)}: a server certificate "
            f"must name exactly one party; {reissue}"
        )
    others = [n for n in names if n.endswith(f".{SERVER_NAME_SUFFIX}") and n != expected.server_name]
    if others:
        raise ConfigError(
            f"certificate {path} also carries the name(s) {', '.join(others)}, which clients verify "
            f"for other parties: it could pass for them; a server certificate must name exactly one "
            f"party; {reissue}"
        )
    if expected.server_name not in names:
        raise ConfigError(
            f"certificate {path} lacks the DNS name {expected.server_name}, which clients verify "
            f"(it has {', '.join(names) or 'none'}); {reissue}, or have your CA add that DNS name"
        )


def dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS subject alternative names of ``cert`` (none when it has no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [str(n).lower() for n in san.get_values_for_type(x509.DNSName)]


def _parse(pem: bytes, path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{path} is not a valid PEM X.509 certificate") from None


def _check_key_matches(key_pem: bytes, key_path: Path, cert: x509.Certificate, cert_path: Path) -> None:
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"private key {key_path} is not an unencrypted PEM private key") from None

    def spki(k: Any) -> bytes:
        return bytes(k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    if spki(key.public_key()) != spki(cert.public_key()):
        raise ConfigError(
            f"private key {key_path} does not belong to certificate {cert_path}; use the pair issued together"
        )
