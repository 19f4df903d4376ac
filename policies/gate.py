"""The one policy gate a node consults between verifying a signed query and running it.

:meth:`PolicyGate.admit` decides, from the TLS identity alone and before the request is even
parsed, whether the caller is a coordinator this node serves. :meth:`PolicyGate.authorise` decides,
for a verified analyst's query, under which data-sharing agreement it is asked and whether that
agreement lets this analyst ask it now at this epsilon; it returns a :class:`Grant`: the agreement
and the *views* of the datasets it shares (each dataset's schema restricted to the fields it
grants). :meth:`PolicyGate.check_uses` then checks every field the parsed query reads against how
the agreement lets it be used. The node compiles the query against the view, so a refusal never
names a field the agreement hides: a hidden field and a field that does not exist are refused in
the same words.

Every refusal is a :class:`~accord.errors.PermissionDenied` with a stable reason code and a
message naming the agreement and the field or rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType

from accord.errors import NotFound, PermissionDenied
from accord.policies.agreements import Agreement, FieldUse
from accord.policies.identity import Identity
from accord.policies.verifying import VerifiedQuery
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, GroupColumn, Query, predicate_columns
from accord.query.schema import DatasetSchema

__all__ = ["Grant", "PolicyGate", "query_uses"]

_USE_OF = {
    AggregateFunction.COUNT: FieldUse.COUNT,
    AggregateFunction.SUM: FieldUse.SUM,
    AggregateFunction.AVG: FieldUse.AVG,
}


@dataclass(frozen=True)
class Grant:
    """What a query may see under its agreement: the agreement and each shared dataset's view."""

    agreement: Agreement
    views: Mapping[str, DatasetSchema]


def _uses(query: Query) -> list[tuple[str | None, FieldUse | None, str]]:
    """Each use ``query`` makes of a field: (field, use, as shown); (None, None, ...) for COUNT(*)."""
    uses: list[tuple[str | None, FieldUse | None, str]] = []
    for output in query.outputs:
        if isinstance(output, GroupColumn):
            continue
        if output.column is None:
            uses.append((None, None, "COUNT(*)"))
        else:
            uses.append(
                (output.column, _USE_OF[output.function], f"{output.function.value}({output.column})")
            )
    uses += [(c, FieldUse.GROUP_BY, f"GROUP BY {c}") for c in query.group_by]
    uses += [(c, FieldUse.FILTER, f"WHERE on {c}") for c in sorted(predicate_columns(query.where))]
    return uses


def query_uses(query: Query) -> tuple[tuple[str, str], ...]:
    """Each field ``query`` reads and how (``("age", "sum")``; ``("*", "count")`` for COUNT(*)),
    sorted, each once: what a decision records."""
    found = {(c or "*", u.value if u is not None else "count") for c, u, _ in _uses(query)}
    return tuple(sorted(found))


def _utc_today() -> date:
    return datetime.now(UTC).date()


class PolicyGate:
    """The access rules of node ``node``: the coordinators it serves, the agreements it holds, the
    datasets it serves (``schemas``), and the most epsilon it lets one query spend."""

    def __init__(
        self,
        node: str,
        coordinators: Iterable[str],
        schemas: Mapping[str, DatasetSchema],
        agreements: Mapping[str, Agreement],
        max_epsilon: Epsilon,
        today: Callable[[], date] = _utc_today,
    ) -> None:
        self.node = node
        self._coordinators = frozenset(coordinators)
        self._schemas = dict(schemas)
        self.agreements: Mapping[str, Agreement] = MappingProxyType(dict(agreements))
        self.max_epsilon = max_epsilon
        self._today = today
        self._views = {
            a.id: MappingProxyType({n: a.view(s) for n, s in self._schemas.items() if n in a.datasets})
            for a in self.agreements.values()
        }

    def admit(self, caller: Identity) -> None:
        """Refuse a caller this node does not serve (any role but an allowed coordinator)."""
        if caller.role != "coordinator" or caller.name not in self._coordinators:
            raise PermissionDenied(
                f"{caller.role} {caller.name!r} may not query node {self.node!r}; the node operator must add "
                "it to [access] coordinators in the node config",
                reason="CALLER_NOT_ALLOWED",
                metadata={"caller": str(caller)},
            )

    def agreement(self, ident: str, analyst: str | None = None, check_dates: bool = True) -> Agreement:
        """The agreement ``ident`` (naming ``analyst`` as a party, when given), in force today
        (unless ``check_dates`` is false: a budget can be read after the agreement ended)."""
        if not ident:
            raise PermissionDenied(
                f"node {self.node!r} answers only queries asked under a data-sharing agreement; name one "
                f"with --agreement (this node holds: {', '.join(sorted(self.agreements)) or 'none'})",
                "AGREEMENT_REQUIRED",
            )
        agreement = self.agreements.get(ident)
        if agreement is None:
            raise PermissionDenied(
                f"node {self.node!r} holds no agreement {ident!r}; it holds: "
                f"{', '.join(sorted(self.agreements)) or 'none'} (see the authority's public register)",
                "AGREEMENT_UNKNOWN",
                {"agreement": ident[:128]},
            )
        if analyst is not None and analyst not in agreement.analysts:
            raise PermissionDenied(
                f"analyst {analyst!r} is not a party to agreement {ident}; ask its owners to add you, or "
                "query under an agreement that covers you",
                "ANALYST_NOT_A_PARTY",
                {"agreement": ident, "analyst": analyst},
            )
        problem = agreement.in_force(self._today()) if check_dates else None
        if problem is not None:
            reason = "AGREEMENT_NOT_YET_VALID" if "not valid until" in problem else "AGREEMENT_EXPIRED"
            raise PermissionDenied(
                f"{problem}; no query runs under it outside its dates", reason, {"agreement": ident}
            )
        return agreement

    def authorise(self, query: VerifiedQuery) -> Grant:
        """The grant ``query``'s analyst has under the agreement it names (refusing with a reason
        code: agreement missing, unknown, not covering the analyst, out of its dates, epsilon above
        the agreement's per-query cap or the node's own ceiling)."""
        if query.analyst.role != "analyst":  # the verifier refuses these first; never rely on one check
            raise PermissionDenied(
                f"{query.analyst} is not an analyst; only analysts' queries are answered",
                "SIGNER_NOT_AN_ANALYST",
            )
        agreement = self.agreement(query.request.agreement, query.analyst.name)
        epsilon = query.request.epsilon
        if epsilon > self.max_epsilon:
            raise PermissionDenied(
                f"node {self.node!r} lets one query spend at most epsilon {self.max_epsilon.display()} "
                f"under any agreement, and this one asks {epsilon.display()} under agreement "
                f"{agreement.id}; ask for less",
                "EPSILON_ABOVE_NODE_LIMIT",
                {"agreement": agreement.id, "limit": str(self.max_epsilon)},
            )
        if epsilon > agreement.budget.per_query:
            raise PermissionDenied(
                f"agreement {agreement.id} lets one query spend at most epsilon "
                f"{agreement.budget.per_query.display()}, "
                f"and this one asks {epsilon.display()}; ask for less",
                "EPSILON_ABOVE_QUERY_CAP",
                {"agreement": agreement.id, "limit": str(agreement.budget.per_query)},
            )
        return Grant(agreement, self._views[agreement.id])

    def not_granted(self, grant: Grant, err: NotFound) -> PermissionDenied:
        """The refusal of a query that names a dataset or field outside ``grant``'s views (as
        compiling against them found): ``DATASET_NOT_IN_AGREEMENT`` or ``FIELD_NOT_IN_AGREEMENT``,
        with the compiler's words, which list and suggest only what the agreement grants, so a
        hidden field and one that does not exist are refused alike."""
        dataset = any(v.field == "from" for v in err.violations)
        return PermissionDenied(
            f"under agreement {grant.agreement.id}: {err.message}",
            "DATASET_NOT_IN_AGREEMENT" if dataset else "FIELD_NOT_IN_AGREEMENT",
            {"agreement": grant.agreement.id},
        )

    def check_uses(self, query: Query, grant: Grant) -> None:
        """Refuse a parsed query that reads a dataset or field the agreement does not share, or uses
        one in a way it does not allow. Hidden and absent fields are refused alike."""
        agreement = grant.agreement
        view = grant.views.get(query.dataset)
        if view is None:
            shared = ", ".join(sorted(grant.views)) or "none at this node"
            raise PermissionDenied(
                f"agreement {agreement.id} shares no dataset {query.dataset!r}; it shares: {shared}",
                "DATASET_NOT_IN_AGREEMENT",
                {"agreement": agreement.id},
            )
        grants = agreement.datasets[query.dataset]
        granted = [c.name for c in view.columns if c.name != view.privacy_unit]
        for column in sorted(query.columns_read):
            if column not in grants.fields and column != view.privacy_unit:
                raise PermissionDenied(
                    f"agreement {agreement.id} grants no field {column!r} in dataset {query.dataset}; it "
                    f"grants: {', '.join(granted) or 'none'}",
                    "FIELD_NOT_IN_AGREEMENT",
                    {"agreement": agreement.id, "dataset": query.dataset},
                )
        for used, use, shown in _uses(query):
            if used is None:
                if not grants.count_rows:
                    raise PermissionDenied(
                        f"agreement {agreement.id} does not allow counting rows (COUNT(*)) of "
                        f"{query.dataset}",
                        "FIELD_USE_NOT_ALLOWED",
                        {"agreement": agreement.id, "use": "count_rows"},
                    )
                continue
            assert use is not None
            if used == view.privacy_unit or grants.allows(used, use):
                continue  # the privacy unit is refused by validation, as in every query
            allowed = ", ".join(sorted(u.value for u in grants.fields[used]))
            raise PermissionDenied(
                f"agreement {agreement.id} does not allow {shown}: field {used} may be used for {allowed} "
                "only",
                "FIELD_USE_NOT_ALLOWED",
                {"agreement": agreement.id, "field": used, "use": use.value},
            )

    def catalog(self, caller: Identity, agreement: str = "") -> Mapping[str, DatasetSchema]:
        """What the catalog shows ``caller`` (an admitted coordinator): under ``agreement``, the
        views it grants; without one, each dataset restricted to the fields some agreement this node
        holds shares (a field no agreement shares is never published)."""
        self.admit(caller)
        if agreement:
            return self._views[self.agreement(agreement).id]
        shared: dict[str, set[str]] = {}
        for views in self._views.values():
            for name, view in views.items():
                shared.setdefault(name, set()).update(c.name for c in view.columns)
        return MappingProxyType({n: self._schemas[n].view(cols) for n, cols in sorted(shared.items())})
