"""Which certificate a server presents: a TLS handshake of our own, for checks gRPC cannot make.

grpcio's Python API neither checks a server's certificate against a revocation list nor shows the
client the certificate it accepted. So the coordinator, which holds the federation's CRL, looks
for itself: :func:`server_certificate` connects to the node with the coordinator's own
certificate and the federation CA, verifies the node's certificate and its name exactly as the
gRPC channel does (chain and ``<name>.<role>.accord``), checks that its ``accord://`` identity is
the expected party's (a certificate carrying another party's DNS name too is caught here), and
returns it, so that its serial can be looked up in the CRL. The coordinator does this before it
first uses a node, when the CRL changes and whenever it refreshes the node's catalog (see
:mod:`accord.coordinator.nodes`).

What it does not do: prove that the gRPC connection reaches the same server. Someone who holds a
revoked node key *and* sits on the network path could answer this handshake with the genuine
node and the gRPC one with the revoked key. Against that, re-key the federation (a new CA) or
keep server certificates short-lived (``accord pki issue --days``); see the README's threat model.
"""

from __future__ import annotations

import socket
import ssl

from cryptography import x509

from accord.errors import Unauthenticated, Unavailable
from accord.policies.identity import Identity, identity_from_certificate
from accord.rpc.transport import TlsFiles

__all__ = ["server_certificate"]


def server_certificate(address: str, tls: TlsFiles, expected: Identity, timeout: float) -> x509.Certificate:
    """The certificate the server at ``address`` (``host:port``) presents, verified against
    ``tls.ca`` and ``expected.server_name``; :class:`Unavailable` if the handshake fails."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=expected.server_name) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, ValueError) as err:
        raise Unavailable(f"{expected} at {address}: TLS check failed ({err})") from None
    if der is None:  # pragma: no cover - a verified handshake always has a peer certificate
        raise Unavailable(f"{expected} at {address}: presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    try:
        identity = identity_from_certificate(cert)
    except Unauthenticated as err:
        raise Unavailable(f"{expected} at {address}: {err.message}") from None
    if identity != expected:  # its DNS name matched: the certificate names two parties
        raise Unavailable(f"{expected} at {address} presents the certificate of {identity}")
    return cert
