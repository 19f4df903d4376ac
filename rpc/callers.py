"""Who may call a server at all: checked on every call, health checks and reflection included.

Each Accord server is open to a fixed set of roles (a node: coordinators; the coordinator:
analysts), and a service on it may have its own (a node's audit service: auditors, and other
nodes for witnessing; its health service: every role it serves). :class:`CallerGate` runs
before any service code, on every method of every service the server holds (the standard health
and reflection services too), and refuses:

- a call without a usable client certificate, or outside its validity (``UNAUTHENTICATED``);
- a certificate on the federation's revocation list (``UNAUTHENTICATED``, ``CERTIFICATE_REVOKED``),
  checked against the CRL as it is now, so a party revoked while connected is refused from its
  next call;
- a role the server does not serve (``PERMISSION_DENIED``, ``WRONG_ROLE``).

Finer checks (which coordinator, which analyst, which agreement) stay with the services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc

from accord.errors import PermissionDenied, Unauthenticated
from accord.policies.revocation import CrlFile
from accord.protos.rpcstatus import to_status
from accord.rpc.around import around_each_call
from accord.rpc.identity import peer_certificate, peer_identity

__all__ = ["CallerGate"]


class CallerGate(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuse every call whose caller is not of one of ``roles`` or whose certificate is revoked."""

    def __init__(
        self,
        roles: frozenset[str],
        crl: CrlFile | None = None,
        services: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """``roles``: who may call the server's services (health and reflection included) unless
        ``services`` (full service name -> roles) names a service's own."""
        self.roles = roles
        self.crl = crl
        self.services = dict(services or {})

    def check(self, context: grpc.ServicerContext, roles: frozenset[str] | None = None) -> None:
        """Abort the call in ``context`` unless its caller may call this server (as one of
        ``roles``, the server's by default)."""
        roles = self.roles if roles is None else roles
        try:
            identity = peer_identity(context)
            if self.crl is not None and self.crl.revokes(peer_certificate(context)):
                raise Unauthenticated(
                    f"the certificate of {identity} has been revoked; ask the federation's CA for a new one",
                    "CERTIFICATE_REVOKED",
                )
            if identity.role not in roles:
                needed = " or ".join(sorted(roles))
                raise PermissionDenied(
                    f"{identity} may not call this service; it serves {needed} certificates only",
                    "WRONG_ROLE",
                    {"caller": str(identity), "required_role": needed},
                )
        except PermissionDenied as err:
            context.abort_with_status(to_status(err))

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        service = str(details.method).split("/")[1] if str(details.method).count("/") >= 2 else ""
        roles = self.services.get(service, self.roles)
        return around_each_call(handler, lambda context: self.check(context, roles), still=self.not_revoked)

    def not_revoked(self, context: grpc.ServicerContext) -> bool:
        """Whether a stream's caller is still not revoked (checked before each message it is sent:
        a health Watch opened before a revocation ends at its next message)."""
        try:
            return self.crl is None or not self.crl.revokes(peer_certificate(context))
        except PermissionDenied:
            return False
