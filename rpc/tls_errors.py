"""What a failed connection means, in words that say what to change.

gRPC reports a failed TLS handshake as ``UNAVAILABLE`` with C-core text such as
``CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK`` or
``Hostname Verification Check failed``. :func:`explain_connection_failure` turns the handshake
failures it recognises into one sentence naming the file or setting to fix; anything else (the
server is down, a network problem) is left as it is. The C-core also logs these failures to
stderr by itself; the ``accord`` command line turns that logging off unless ``GRPC_VERBOSITY``
asks for it.
"""

from __future__ import annotations

from accord.policies.identity import Identity
from accord.rpc.transport import TlsFiles

__all__ = ["explain_connection_failure"]

_WRONG_NAME = ("Hostname Verification Check failed", "No match found for server name")
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED",)
_EXPIRED = ("certificate has expired", "certificate is not yet valid")
_REFUSED_US = ("Socket closed", "SSLV3_ALERT", "TLSV1_ALERT", "alert certificate", "alert bad certificate")
_NOTHING_THERE = ("Connection refused", "connection refused")


def explain_connection_failure(message: str, address: str, expected: Identity, tls: TlsFiles) -> str | None:
    """A sentence saying what to change, if ``message`` (from a failed call to ``address``, which
    should be ``expected``) is a failure to connect that this recognises; else None."""
    if "failed to connect" not in message:  # a call on a working connection failed: not a handshake
        return None
    if any(s in message for s in _WRONG_NAME):
        return (
            f"the server at {address} is not {expected}: its certificate does not carry the name "
            f"{expected.server_name} (a server of another role or name answered, or its certificate "
            f"was issued without that name); check the address, the {expected.role} name you expect, "
            f"or have it reissued with `accord pki issue --role {expected.role} --name {expected.name}`"
        )
    if any(s in message for s in _EXPIRED):
        return (
            f"the server at {address} presented a certificate that has expired or is not yet valid; "
            f"its operator must install a current one (`accord pki issue`)"
        )
    if any(s in message for s in _UNTRUSTED):
        return (
            f"the server at {address} presented a certificate that the CA in {tls.ca} did not issue; "
            "check that your CA file is your federation's CA and that the address is the right server"
        )
    if any(s in message for s in _NOTHING_THERE):
        return f"nothing is listening at {address}; check the address and that the {expected.role} is running"
    if any(s in message for s in _REFUSED_US):
        return (
            f"the server at {address} closed the connection during the TLS handshake: it most likely "
            f"refused your certificate {tls.cert} (issued by another CA than the one it trusts, expired, "
            "or revoked); check your certificate with `accord pki show`"
        )
    return None
