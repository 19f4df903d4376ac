"""The coordinator's query path, free of gRPC.

1. check the analyst is allowed and signed the query they send; 2. parse the SQL once (early,
clear errors for malformed SQL) and find which nodes hold the dataset; 3. forward the analyst's
signed envelope, unchanged, to every holder in parallel with a deadline (each node checks the
query against the view its agreement grants); 4. combine what came back. Nodes that did
not answer are named in the answer (``partial``), or, with ``require_all``, the query fails.
The coordinator never sees a row: only the nodes' noisy aggregates.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Iterator, Mapping

from accord.coordinator.combine import combine
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.nodes import FanOutPool, NodeClient, ask_each, describe, fan_out, holders
from accord.coordinator.preview import combine_previews
from accord.coordinator.secure import node_verifier, run_secure, secure_setting
from accord.errors import (
    BudgetExhausted,
    DeadlineExceeded,
    Failure,
    InvalidQuery,
    NotFound,
    PartialFailure,
    PermissionDenied,
    ResourceLimit,
    Unauthenticated,
    Unavailable,
    Violation,
)
from accord.policies.identity import Identity
from accord.policies.signing import QueryPayload, SignedQuery
from accord.policies.verifying import QueryVerifier
from accord.query.model import Query
from accord.query.preview import BudgetLine, FederatedExplanation
from accord.query.release import FederatedRelease
from accord.query.schema import DatasetSchema
from accord.query.sql import parse
from accord.rpc.fairness import AnalystLimits
from accord.rpc.serving import open_crl

__all__ = [
    "MAX_FANOUT_THREADS",
    "PARSED_QUERIES",
    "CoordinatorService",
]


log = logging.getLogger(__name__)

# Errors that mean "the query itself is refused" (or "every node is busy: retry shortly"); if every
# node refuses for such a reason the analyst gets that error rather than an empty partial answer.
_USER_ERRORS = (InvalidQuery, PermissionDenied, BudgetExhausted, ResourceLimit)

PARSED_QUERIES = 512
"""How many distinct SQL texts keep their parsed query (a few KB each at most)."""
MAX_FANOUT_THREADS = 256
"""At most this many calls to nodes in flight at once (enough for max_in_flight queries to every
node of a federation of up to 8 nodes at the default max_in_flight; beyond that calls wait)."""


class CoordinatorService:
    def __init__(self, config: CoordinatorConfig, clients: Mapping[str, NodeClient]) -> None:
        self.config = config
        self.clients = dict(clients)
        self._analysts = frozenset(config.analysts)
        # Parsing is a pure function of the text and the Query is immutable, so repeated texts
        # (dashboards, every query of a benchmark, retries with a new id) skip sqlglot, which
        # costs about a millisecond. Only successes are cached; a refusal is recomputed.
        self._parse = functools.lru_cache(maxsize=PARSED_QUERIES)(parse)
        self._pool = FanOutPool(min(config.max_in_flight * max(1, len(self.clients)), MAX_FANOUT_THREADS))
        self._fair = AnalystLimits(config.fairness)
        self._node_verifier: QueryVerifier | None = None

    @classmethod
    def from_config(cls, config: CoordinatorConfig) -> CoordinatorService:
        crl = open_crl(config.tls)
        return cls(config, {n.name: NodeClient(n, config.tls, crl) for n in config.nodes})

    def node_verifier(self) -> QueryVerifier:
        """Checks the node certificates that sign secure-aggregation shares (the federation's CA)."""
        if self._node_verifier is None:
            self._node_verifier = node_verifier(self.config.tls)
        return self._node_verifier

    def close(self) -> None:
        self._pool.close()
        for client in self.clients.values():
            client.close()

    @contextlib.contextmanager
    def admitted(self, caller: Identity) -> Iterator[None]:
        """Run one call of ``caller`` (every analyst RPC: queries, previews, budgets, catalogs, the
        node list) within its share (:class:`~accord.rpc.fairness.AnalystLimits`), once it is
        known to be an analyst this coordinator serves: one analyst's flood of any kind fills only
        its own share of the server's calls and of the fan-out to the nodes."""
        self.authorise(caller)
        with self._fair.admit(caller.name):
            yield

    def authorise(self, caller: Identity) -> None:
        if caller.role != "analyst" or caller.name not in self._analysts:
            raise PermissionDenied(
                f"{caller.role} {caller.name!r} may not submit queries to this coordinator; "
                f"its operator must add "
                "the analyst's certificate name to [access] analysts",
                reason="CALLER_NOT_ALLOWED",
                metadata={"caller": f"{caller.role}/{caller.name}"},
            )

    def federated_catalog(self) -> tuple[dict[str, tuple[DatasetSchema, tuple[str, ...]]], dict[str, str]]:
        """Every dataset with its schema (from the first node holding it) and its holders, and the
        nodes that could not be asked (a node that is down now is listed there, and its datasets
        keep it as a holder from its last known catalog)."""
        datasets: dict[str, tuple[DatasetSchema, list[str]]] = {}
        unreachable: dict[str, str] = {}
        for name in sorted(self.clients):
            client = self.clients[name]
            schemas = client.catalog()
            if schemas is None or client.last_error:
                unreachable[name] = client.last_error or "unreachable"
            if schemas is None:
                continue
            for schema in schemas:
                datasets.setdefault(schema.name, (schema, []))[1].append(name)
        return {k: (s, tuple(n)) for k, (s, n) in sorted(datasets.items())}, unreachable

    def catalog_under(
        self, agreement: str
    ) -> tuple[dict[str, tuple[DatasetSchema, tuple[str, ...]]], dict[str, str]]:
        """What ``agreement`` grants at each node holding it, and the nodes that hold no such
        agreement or could not be asked (asked now: grants are not cached)."""
        timeout = self.config.deadline_seconds
        found, errors = ask_each(
            self.clients.values(), lambda c: c.catalog_under(agreement, timeout), self._pool
        )
        datasets: dict[str, tuple[DatasetSchema, list[str]]] = {}
        for name in sorted(found):
            for schema in found[name]:
                datasets.setdefault(schema.name, (schema, []))[1].append(name)
        if not found:
            self._raise_common_refusal(errors)
        return {k: (s, tuple(n)) for k, (s, n) in sorted(datasets.items())}, {
            n: describe(e) for n, e in errors.items()
        }

    def _checked_payload(self, caller: Identity, signed: SignedQuery, kind: str) -> QueryPayload:
        """The payload of ``signed``, refused early (the nodes check again, for real) when it was
        not signed by the caller, for this coordinator, as a request of ``kind``."""
        self.authorise(caller)
        payload = QueryPayload.decode(signed.payload)
        if payload.analyst != caller.name:
            raise Unauthenticated(
                f"the request is signed by analyst {payload.analyst[:63]!r} but was sent by {caller}; "
                "analysts "
                "send their own signed requests",
                "ANALYST_MISMATCH",
                {"caller": str(caller)},
            )
        if payload.coordinator != self.config.name:
            raise PermissionDenied(
                f"the request is signed for coordinator {payload.coordinator[:63]!r}, not "
                f"{self.config.name!r}; sign it for the coordinator you send it to (the client does: check "
                "coordinator_name in your profile)",
                "QUERY_FOR_ANOTHER_COORDINATOR",
                {"caller": str(caller)},
            )
        if payload.kind != kind:
            raise PermissionDenied(
                f"this is a {payload.kind} request, sent as a {kind} request; the client signs each kind",
                "WRONG_REQUEST_KIND",
                {"caller": str(caller)},
            )
        return payload

    def _route(self, sql: str) -> tuple[Query, dict[str, DatasetSchema], dict[str, str]]:
        """The parsed query, the nodes holding its dataset and the nodes that could not be asked.

        The columns are not checked here: every query is asked under an agreement, and only the
        nodes know the view each grants. Checking against the whole catalog would refuse a field
        the agreement hides in other words than one that does not exist, and list fields the
        agreement hides; the nodes refuse both alike, naming the agreement."""
        query = self._parse(sql)
        found, unknown = holders(self.clients, query.dataset)
        if not found:
            if unknown:
                raise Unavailable(
                    f"no reachable node is known to hold dataset {query.dataset!r}; unreachable: "
                    + ", ".join(f"{n} ({r})" for n, r in sorted(unknown.items()))
                )
            known = sorted(self.federated_catalog()[0])
            raise NotFound(
                f"no node holds a dataset called {query.dataset!r}; available: {', '.join(known) or 'none'}",
                (Violation("from", f"unknown dataset {query.dataset}"),),
            )
        return query, found, unknown

    def explain(
        self, caller: Identity, signed: SignedQuery, target: float | None = None
    ) -> FederatedExplanation:
        """Every holder's preview of ``signed`` (signed for preview) and the combined answer's noise."""
        payload = self._checked_payload(caller, signed, "explain")
        request = payload.request()
        query, found, unknown = self._route(request.sql)
        deadline_at = time.monotonic() + self.config.deadline_seconds
        previews, errors = ask_each(
            [self.clients[n] for n in sorted(found)],
            lambda c: c.explain(signed, target, deadline_at),
            self._pool,
        )
        if not previews:
            self._raise_common_refusal(errors)
        refused = dict(unknown) | {n: describe(e) for n, e in errors.items()}
        answering = [previews[n] for n in sorted(previews)]
        return FederatedExplanation(
            query_id=request.query_id,
            dataset=query.dataset,
            nodes=tuple(answering),
            refused=refused,
            combined=combine_previews(
                [p for p in answering if p.fits],
                request.epsilon,
                target,
                secure.delta_value if (secure := secure_setting(found)) is not None else None,
            ),
        )

    def budget(
        self, caller: Identity, signed: SignedQuery
    ) -> tuple[dict[str, tuple[BudgetLine, ...]], dict[str, str]]:
        """The signing analyst's budget lines at every node, and the nodes that could not say."""
        self._checked_payload(caller, signed, "budget")
        deadline_at = time.monotonic() + self.config.deadline_seconds
        lines, errors = ask_each(self.clients.values(), lambda c: c.budget(signed, deadline_at), self._pool)
        if not lines and errors:
            self._raise_common_refusal(errors)
        return lines, {n: describe(e) for n, e in errors.items()}

    def submit(self, caller: Identity, signed: SignedQuery, require_all: bool = False) -> FederatedRelease:
        return self.submit_timed(caller, signed, require_all)[0]

    def submit_timed(
        self, caller: Identity, signed: SignedQuery, require_all: bool = False
    ) -> tuple[FederatedRelease, float | None]:
        """Like :meth:`submit`, with the slowest answering node's own time (seconds, as the nodes
        reported it; ``None`` if none did).

        The coordinator decodes a copy of the signed payload to route the query and to refuse early
        what every node would refuse; it never changes or re-encodes it, and it does not check the
        signature (the nodes do: the coordinator's word counts for nothing there)."""
        payload = self._checked_payload(caller, signed, "query")
        request = payload.request()
        query, found, unknown = self._route(request.sql)
        if require_all and unknown:
            raise PartialFailure(self._missing_message(unknown), unknown)
        setting = secure_setting(found)
        if setting is not None:
            strangers = [n for n in setting.holders if n not in self.clients]
            if strangers:
                raise Unavailable(
                    f"dataset {query.dataset!r} is secure-aggregated by its holders "
                    f"{', '.join(setting.holders)}, and this coordinator does not know "
                    f"{', '.join(strangers)}; its operator must add them to [[nodes]]"
                )
            down = {n: r for n, r in unknown.items() if n in setting.holders}
            if down:
                raise PartialFailure(
                    "secure aggregation needs every holder, and these could not be asked: "
                    + ", ".join(f"{n} ({r})" for n, r in sorted(down.items()))
                    + f"; retry query {request.query_id} with the same id later",
                    down,
                )
            secure = run_secure(
                {n: self.clients[n] for n in setting.holders},
                signed,
                request.query_id,
                self.config.deadline_seconds,
                self._pool,
                self.node_verifier(),
            )
            return secure, None
        result = fan_out(
            [self.clients[n] for n in sorted(found)],
            signed,
            request.query_id,
            self.config.deadline_seconds,
            self._pool,
        )
        missing = dict(unknown)
        missing.update({n: describe(e) for n, e in result.errors.items()})
        if not result.releases:
            self._raise_common_refusal(result.errors)
        if require_all and missing:
            raise PartialFailure(self._missing_message(missing), missing)
        release = combine(request.query_id, result.releases, missing, _public_bounds(found.values()))
        log.info(
            "query %s of analyst %s on %s: %d node(s) answered, %d missing",
            request.query_id,
            payload.analyst,
            query.dataset,
            len(result.releases),
            len(missing),
        )
        return release, result.slowest_node_seconds

    @staticmethod
    def _missing_message(missing: Mapping[str, str]) -> str:
        listed = ", ".join(f"{n} ({r})" for n, r in sorted(missing.items()))
        return f"--require-all was given and these nodes did not answer: {listed}"

    @staticmethod
    def _raise_common_refusal(errors: Mapping[str, Failure]) -> None:
        """When no node answered: surface the nodes' own refusal if they agree on its kind."""
        user = [e for e in errors.values() if isinstance(e, _USER_ERRORS)]
        if user and len(user) == len(errors) and len({type(e) for e in user}) == 1:
            raise user[0]
        listed = ", ".join(f"{n} ({describe(e)})" for n, e in sorted(errors.items()))
        busy = [e for e in errors.values() if isinstance(e, ResourceLimit)]
        if busy and all(
            isinstance(e, ResourceLimit | Unavailable | DeadlineExceeded) for e in errors.values()
        ):
            # Every node that could be reached was busy: retrying soon can work, so say so.
            hints = [e.retry_after_seconds for e in busy if e.retry_after_seconds is not None]
            raise ResourceLimit(
                f"every node that could be reached is busy: {listed}; retry shortly",
                retry_after_seconds=max(hints, default=None),
            )
        raise Unavailable(f"no node answered: {listed}")


def _public_bounds(schemas: Iterable[DatasetSchema]) -> dict[str, tuple[float, float]]:
    """Per numeric column, the widest declared ``[lower, upper]`` over the holders' schemas (they
    agree when validation passed; the widest is the safe choice for clamping a combined mean)."""
    out: dict[str, tuple[float, float]] = {}
    for schema in schemas:
        for col in schema.columns:
            if col.lower is None or col.upper is None:
                continue
            lo, hi = float(col.lower), float(col.upper)
            if col.name in out:
                lo, hi = min(lo, out[col.name][0]), max(hi, out[col.name][1])
            out[col.name] = (lo, hi)
    return out
