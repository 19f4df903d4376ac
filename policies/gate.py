"""The one policy gate a node consults between verifying a signed query and running it.

:meth:`PolicyGate.admit` decides, from the TLS identity alone and before the request is even
parsed, whether the caller is a coordinator this node serves. :meth:`PolicyGate.authorise` decides
what the verified analyst may ask and returns the *views* of the datasets it may query: the
dataset schemas restricted to the columns it may use (:meth:`accord.query.schema.DatasetSchema.view`),
against which the node compiles the SQL, so a refusal never names a column the view hides.

Today the rules are: the coordinator allow-list, and the analyst role (checked with the signature
by :class:`~accord.policies.signing.QueryVerifier`); every analyst sees every dataset whole. Data-
sharing agreements (parties, dates, purposes, fields) and citizens' consent plug in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from accord.errors import PermissionDenied
from accord.policies.identity import Identity
from accord.policies.verifying import VerifiedQuery
from accord.query.schema import DatasetSchema

__all__ = ["PolicyGate"]


class PolicyGate:
    """The access rules of node ``node``."""

    def __init__(self, node: str, coordinators: Iterable[str], schemas: Mapping[str, DatasetSchema]) -> None:
        self.node = node
        self._coordinators = frozenset(coordinators)
        self._views: Mapping[str, DatasetSchema] = MappingProxyType(dict(schemas))

    def admit(self, caller: Identity) -> None:
        """Refuse a caller this node does not serve (any role but an allowed coordinator)."""
        if caller.role != "coordinator" or caller.name not in self._coordinators:
            raise PermissionDenied(
                f"{caller.role} {caller.name!r} may not query node {self.node!r}; the node operator must add "
                "it to [access] coordinators in the node config",
                reason="CALLER_NOT_ALLOWED",
                metadata={"caller": str(caller)},
            )

    def authorise(self, query: VerifiedQuery) -> Mapping[str, DatasetSchema]:
        """The dataset views ``query``'s analyst may query (refusing with
        :class:`~accord.errors.PermissionDenied` and a reason code when nothing may be asked)."""
        if query.analyst.role != "analyst":  # the verifier refuses these first; never rely on one check
            raise PermissionDenied(
                f"{query.analyst} is not an analyst; only analysts' queries are answered",
                "SIGNER_NOT_AN_ANALYST",
            )
        return self._views

    def catalog(self, caller: Identity) -> Mapping[str, DatasetSchema]:
        """What the catalog shows ``caller`` (an admitted coordinator): every dataset's schema."""
        self.admit(caller)
        return self._views
