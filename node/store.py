"""The release cache: a query id that was answered once is answered the same way again.

A client retries with the same ``query_id``; the node must then return the stored release
byte for byte (no fresh noise, no second charge). The store keeps the serialized bytes and a
fingerprint of the request so that an id reused for a *different* query is refused rather than
answered with the wrong release. This in-memory store is the first backend; a durable one (with
the budget ledger) implements the same :class:`ReleaseStore` contract.
"""

from __future__ import annotations

import abc
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from accord.errors import InvalidQuery, Violation
from accord.query.model import QueryRequest


def fingerprint(caller: str, request: QueryRequest) -> str:
    """What makes two requests "the same query": who asked, the SQL text and the epsilon."""
    h = hashlib.sha256()
    for part in (caller, request.sql, str(request.epsilon)):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class StoredRelease:
    fingerprint: str
    payload: bytes


class ReleaseStore(abc.ABC):
    @abc.abstractmethod
    def get(self, query_id: str) -> StoredRelease | None: ...

    @abc.abstractmethod
    def put(self, query_id: str, release: StoredRelease) -> None: ...

    def lookup(self, query_id: str, fp: str) -> bytes | None:
        """The stored payload for a retry, None for a new id; refuses an id reused differently."""
        stored = self.get(query_id)
        if stored is None:
            return None
        if stored.fingerprint != fp:
            raise InvalidQuery(
                f"query_id {query_id!r} was already used for a different query; "
                "use a fresh id (a UUID) for every new query and reuse it only to retry the same one",
                (Violation("query_id", "reused for a different query"),),
            )
        return stored.payload


class MemoryReleaseStore(ReleaseStore):
    """Keeps the most recent ``capacity`` releases in memory (lost on restart)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._items: OrderedDict[str, StoredRelease] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, query_id: str) -> StoredRelease | None:
        with self._lock:
            return self._items.get(query_id)

    def put(self, query_id: str, release: StoredRelease) -> None:
        with self._lock:
            self._items[query_id] = release
            self._items.move_to_end(query_id)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
