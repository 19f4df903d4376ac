"""What a node remembers, behind one interface: every query it answered, with the release it sent.

A node must never answer one query twice with different noise. Every answer is recorded in one
durable transaction *before* its release leaves the node (:meth:`NodeState.record`), and a query id
seen again returns the recorded release byte for byte (:meth:`NodeState.find`), after a restart
too. The next pieces of work add the privacy-budget charge and the audit-log entry to the same
transaction.

What is stored about an answer (:class:`Answer`): who asked (the analyst's name), the query id,
digests of the request and of the signed payload, the envelope itself (the analyst's signed
query: SQL text, epsilon, time, signature, certificate), the dataset, the epsilon, when it was
answered, and the release (noisy aggregates). Never a row value or a person identifier.

Backends: :class:`~accord.node.state.memory.MemoryState` (forgets everything on restart: tests and
benchmarks) and :class:`~accord.node.state.sqlite.SqliteState` (durable). One contract test runs
against both (``tests/unit/test_state.py``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from accord.errors import ConfigError

__all__ = ["Answer", "NodeState", "StateInUse"]


class StateInUse(ConfigError):
    """The state file is held by another running node (another process has it open)."""


@dataclass(frozen=True)
class Answer:
    """One answered query as the node keeps it. ``(analyst, query_id)`` identifies it: each analyst
    names their own queries, so nobody can take another analyst's query id."""

    analyst: str
    query_id: str
    request_digest: bytes
    """SHA-256 of what makes two requests the same query (everything the analyst signed but the
    time of signing): a retry re-signed later is the same query; another SQL text is not."""
    payload_digest: bytes
    """SHA-256 of the signed payload: what the analyst signed, in its one canonical form."""
    envelope: bytes
    dataset: str
    epsilon: str
    answered_at: datetime
    release: bytes
    """The serialized release, sent byte for byte on every retry."""

    def __post_init__(self) -> None:
        if not self.analyst or not self.query_id:
            raise ValueError("an answer needs its analyst and query id")
        if len(self.request_digest) != 32 or len(self.payload_digest) != 32:
            raise ValueError("digests are SHA-256 (32 bytes)")
        if self.answered_at.tzinfo is None:
            raise ValueError("answered_at must be timezone-aware")


class NodeState(abc.ABC):
    """A node's durable memory. Implementations are thread-safe."""

    @abc.abstractmethod
    def find(self, analyst: str, query_id: str) -> Answer | None:
        """The recorded answer to ``analyst``'s query ``query_id``, or None."""

    @abc.abstractmethod
    def record(self, answer: Answer) -> Answer:
        """Record ``answer`` in one durable transaction and return what is recorded for its
        ``(analyst, query_id)``: ``answer`` itself, or the answer recorded first if there was one
        (the first writer wins, so concurrent requests with one id yield one release). Only once
        this returns may the release leave the node."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's resources (files, locks)."""

    def __enter__(self) -> NodeState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
