"""What a failed connection means (:mod:`accord.rpc.tls_errors`), on the texts grpcio 1.85 gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.policies.identity import Identity
from accord.rpc.tls_errors import explain_connection_failure
from accord.rpc.transport import TlsFiles

TLS = TlsFiles(Path("me.pem"), Path("me.key"), Path("ca.pem"))
ADDRESS = "10.0.0.5:50050"
PREFIX = f"failed to connect to all addresses; last error: UNKNOWN: ipv4:{ADDRESS}: "
SEEN = {
    "wrong name or role": PREFIX + "Custom verification check failed with error: UNAUTHENTICATED: "
    "Hostname Verification Check failed.",
    "untrusted": PREFIX + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK",
    "expired": PREFIX + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: OK",
    "refused us": "failed to connect to all addresses; last error: UNAVAILABLE: "
    f"ipv4:{ADDRESS}: Socket closed",
    "nothing there": PREFIX + "Failed to connect to remote host: Connection refused",
}


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("wrong name or role", "is not coordinator/coordinator"),
        ("untrusted", "the CA in ca.pem did not issue"),
        ("expired", "has expired or is not yet valid"),
        ("refused us", "refused your certificate me.pem"),
        ("nothing there", "nothing is listening at"),
    ],
)
def test_handshake_failures_say_what_to_change(case: str, says: str) -> None:
    """Property: each handshake failure grpcio reports becomes one sentence naming what to fix,
    without the OpenSSL text."""
    text = explain_connection_failure(SEEN[case], ADDRESS, Identity("coordinator", "coordinator"), TLS)
    assert text is not None and says in text
    assert "OPENSSL" not in text and ": OK" not in text


def test_other_failures_are_left_alone() -> None:
    """Property: a failure on a working connection (not while connecting) is not reinterpreted."""
    assert explain_connection_failure("Socket closed", ADDRESS, Identity("node", "county"), TLS) is None
    assert explain_connection_failure("Deadline Exceeded", ADDRESS, Identity("node", "county"), TLS) is None
