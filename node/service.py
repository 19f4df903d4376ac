"""The node's answer path, free of gRPC: the one place where a query is checked, answered and recorded.

:meth:`NodeService.answer` is the life of a query at a node, in this order:

1. **caller**: the TLS identity must be a coordinator this node serves (:meth:`PolicyGate.admit`);
2. **verify**: the analyst's signature, certificate chain, role and validity, the query's freshness
   (:class:`~accord.policies.verifying.QueryVerifier`), and that the analyst sent it through this
   very coordinator (another coordinator of the federation cannot replay it);
3. **gate**: what the analyst may ask (:meth:`PolicyGate.authorise`: today every dataset whole;
   agreements and consent plug in there), and the SQL compiled against those views (a node trusts
   nobody upstream, so it re-checks what the coordinator already checked);
4. **state**: a query id this analyst used before returns the recorded release byte for byte (or is
   refused if it named another query): no fresh noise, no second charge;
5. **backend**: the exact aggregates on the local engine (filter, bounding, clamping);
6. **release**: OpenDP noise, intervals;
7. **state**: the answer recorded in one durable transaction (:meth:`NodeState.record`); only then
   does the release leave the node.

Everything logged or stored about a query names its analyst.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from accord.errors import PermissionDenied
from accord.node.backend import ExecutionBackend
from accord.node.release import build_release
from accord.node.state import Answer, NodeState
from accord.policies.gate import PolicyGate
from accord.policies.identity import Identity
from accord.policies.signing import SignedQuery
from accord.policies.verifying import QueryVerifier, VerifiedQuery
from accord.query.model import Query
from accord.query.release import Release
from accord.query.schema import DatasetSchema
from accord.query.sql import compile_query

__all__ = ["NodeService"]

log = logging.getLogger(__name__)

_COMPILED_QUERIES = 512
"""How many distinct (SQL text, views) pairs keep their parsed, validated query (a few KB each)."""
_ID_LOCKS = 64


class NodeService:
    """Answers queries for one node. Thread-safe; one instance per server."""

    def __init__(
        self,
        name: str,
        backend: ExecutionBackend,
        schemas: tuple[DatasetSchema, ...],
        gate: PolicyGate,
        verifier: QueryVerifier,
        state: NodeState,
    ) -> None:
        self.name = name
        self.gate = gate
        self._backend = backend
        self._schemas = {s.name: s for s in schemas}
        self._verifier = verifier
        self._state = state
        self._id_locks = [threading.Lock() for _ in range(_ID_LOCKS)]
        # Compiling is a pure function of the SQL text and the views it is checked against, and the
        # Query is immutable: repeated texts (dashboards, retries) skip sqlglot. Only successes are
        # cached; a refusal is recomputed (and raised again).
        self._compile = functools.lru_cache(maxsize=_COMPILED_QUERIES)(self._compile_uncached)

    @staticmethod
    def _compile_uncached(sql: str, views: tuple[DatasetSchema, ...]) -> Query:
        return compile_query(sql, {v.name: v for v in views})

    @property
    def schemas(self) -> tuple[DatasetSchema, ...]:
        return tuple(self._schemas[k] for k in sorted(self._schemas))

    def catalog(self, caller: Identity) -> tuple[DatasetSchema, ...]:
        """The datasets ``caller`` (a coordinator this node serves) may see."""
        views = self.gate.catalog(caller)
        return tuple(views[k] for k in sorted(views))

    def close(self) -> None:
        """Release the state file and the engine (the server has stopped taking calls)."""
        self._state.close()
        self._backend.close()

    def answer(self, caller: Identity, signed: SignedQuery, serialize: Callable[[Release], bytes]) -> bytes:
        """The release bytes for ``signed``, asked by ``caller`` (see the module docstring).

        ``serialize`` turns a release into its wire bytes (the servicer owns the wire format): the
        bytes are recorded, and a retry is answered with exactly them."""
        started = time.perf_counter()
        self.gate.admit(caller)
        verified = self._verifier.verify(signed)
        if verified.payload.coordinator != caller.name:
            raise PermissionDenied(
                f"analyst {verified.analyst.name!r} sent this query through coordinator "
                f"{verified.payload.coordinator[:63]!r}, not {caller.name!r}; nodes answer a signed query "
                "only from the coordinator it names",
                "QUERY_FOR_ANOTHER_COORDINATOR",
                {"analyst": verified.analyst.name, "caller": str(caller)},
            )
        views = self.gate.authorise(verified)
        query = self._compile(verified.request.sql, tuple(views[k] for k in sorted(views)))
        analyst, query_id = verified.analyst.name, verified.request.query_id
        digest = verified.payload.request_digest()
        with self._id_locks[hash((analyst, query_id)) % _ID_LOCKS]:
            stored = self._state.find(analyst, query_id)
            if stored is not None:
                _same_query(stored, digest, verified)
                log.info("query %s of analyst %s: answered again from the state", query_id, analyst)
                return stored.release
            schema = self._schemas[query.dataset]
            exact = self._backend.execute(query, schema)
            release = build_release(
                query,
                schema,
                exact,
                verified.request.epsilon,
                query_id,
                self.name,
                time.perf_counter() - started,
            )
            recorded = self._state.record(
                Answer(
                    analyst=analyst,
                    query_id=query_id,
                    request_digest=digest,
                    payload_digest=signed.payload_digest(),
                    envelope=signed.to_bytes(),
                    dataset=query.dataset,
                    epsilon=str(verified.request.epsilon),
                    answered_at=datetime.now(UTC),
                    release=serialize(release),
                )
            )
            _same_query(recorded, digest, verified)
        log.info("query %s of analyst %s answered on dataset %s", query_id, analyst, query.dataset)
        return recorded.release


def _same_query(stored: Answer, digest: bytes, verified: VerifiedQuery) -> None:
    """Refuse an id the analyst already used for another query (another SQL, epsilon or agreement)."""
    if stored.request_digest != digest:
        raise PermissionDenied(
            f"query id {verified.request.query_id!r} was already used by analyst {verified.analyst.name!r} "
            "for a different query; use a fresh id (a UUID) for every new query and reuse an id only to "
            "retry the same query",
            "QUERY_ID_REUSED",
            {"analyst": verified.analyst.name, "query_id": verified.request.query_id},
        )
