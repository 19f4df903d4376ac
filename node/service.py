"""The node's answer path, free of gRPC: one place where a query is authorised, charged and run.

``NodeService.answer`` is the life of a query at a node:

1. **authorise** the caller: first who it is (:meth:`NodeService.admit`, the coordinator
   allow-list, before the request is even parsed), then what it asks (:meth:`NodeService.authorise`:
   agreements, purposes and consent checks slot in there);
2. **parse and validate** the SQL against this node's own public metadata (a node trusts nobody
   upstream, so it re-checks what the coordinator already checked);
3. **retry check**: a query id answered before returns the stored release, no fresh noise;
4. **charge** the privacy budget (:meth:`NodeService.charge`; the durable ledger slots in here,
   reserving *before* computing so that a crash leaves the budget spent);
5. **execute** exactly on the local engine (filter, bounding, clamping), then add OpenDP noise;
6. **store** the release, then reply.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping

from accord.errors import PermissionDenied
from accord.node.backend import ExecutionBackend
from accord.node.release import build_release
from accord.node.store import MemoryReleaseStore, ReleaseStore, StoredRelease, fingerprint
from accord.policies.identity import Identity
from accord.query.model import Query, QueryRequest
from accord.query.release import Release
from accord.query.schema import DatasetSchema
from accord.query.sql import compile_query

log = logging.getLogger(__name__)

_COMPILED_QUERIES = 512
"""How many distinct SQL texts keep their parsed, validated query (a few KB each at most)."""


class NodeService:
    """Answers queries for one node. Thread-safe; one instance per server."""

    def __init__(
        self,
        name: str,
        engine: ExecutionBackend,
        schemas: Mapping[str, DatasetSchema],
        allowed_coordinators: tuple[str, ...],
        store: ReleaseStore | None = None,
    ) -> None:
        self.name = name
        self._engine = engine
        self._schemas = dict(schemas)
        self._allowed = frozenset(allowed_coordinators)
        self._store = store if store is not None else MemoryReleaseStore()
        self._id_locks = [threading.Lock() for _ in range(64)]
        # Parsing is a pure function of the SQL text and this node's schemas (fixed for the life of
        # the service), and the Query is immutable: repeated texts (dashboards, retries with a new
        # id) skip sqlglot. Only successes are cached; a refusal is recomputed (and re-raised).
        self._compile = functools.lru_cache(maxsize=_COMPILED_QUERIES)(self._compile_uncached)

    def _compile_uncached(self, sql: str) -> Query:
        return compile_query(sql, self._schemas)

    @property
    def schemas(self) -> tuple[DatasetSchema, ...]:
        return tuple(self._schemas[k] for k in sorted(self._schemas))

    def admit(self, caller: Identity) -> None:
        """Refuse callers this node has not agreed to answer, before looking at their request."""
        if caller.role != "coordinator" or caller.name not in self._allowed:
            raise PermissionDenied(
                f"{caller.role} {caller.name!r} may not query node {self.name!r}; the node operator must add "
                f"it to [access] coordinators in the node config",
                reason="CALLER_NOT_ALLOWED",
                metadata={"caller": f"{caller.role}/{caller.name}"},
            )

    def authorise(self, caller: Identity, query: Query) -> None:
        """Refuse queries this caller may not ask. (Agreements slot in here.)"""
        self.admit(caller)

    def charge(self, caller: Identity, query: Query, request: QueryRequest) -> None:
        """Reserve the privacy budget for this query (before computing). No ledger yet."""

    def answer_once(
        self, caller: Identity, request: QueryRequest, serialize: Callable[[Release], bytes]
    ) -> bytes:
        """Answer ``request`` for ``caller``, or return the stored bytes of an earlier answer to the
        same query id (see the module docstring for the steps).

        ``serialize`` turns a release into its wire bytes (the servicer owns the wire format), so a
        retry is answered byte for byte without this module knowing about protobuf.
        """
        started = time.perf_counter()
        self.admit(caller)  # before parsing: a caller the node does not serve gets no feedback
        query = self._compile(request.sql)
        self.authorise(caller, query)
        fp = fingerprint(f"{caller.role}/{caller.name}", request)
        with self._id_locks[hash(request.query_id) % len(self._id_locks)]:
            stored = self._store.lookup(request.query_id, fp)
            if stored is not None:
                log.info("query %s answered from the release store", request.query_id)
                return stored
            self.charge(caller, query, request)
            schema = self._schemas[query.dataset]
            exact = self._engine.execute(query, schema)
            release = build_release(
                query,
                schema,
                exact,
                request.epsilon,
                request.query_id,
                self.name,
                time.perf_counter() - started,
            )
            payload = serialize(release)
            self._store.put(request.query_id, StoredRelease(fp, payload))
            log.info("query %s answered on dataset %s", request.query_id, query.dataset)
            return payload
