"""The in-memory state backend: the same contract as SQLite, forgotten when the process ends.

For tests and benchmarks (``[state] backend = "memory"``): a node that restarts with it answers a
retried query id again with fresh noise, so production nodes use SQLite.
"""

from __future__ import annotations

import threading

from accord.node.state.base import Answer, NodeState

__all__ = ["MemoryState"]


class MemoryState(NodeState):
    """Every answer in a dict, guarded by one lock."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], Answer] = {}
        self._lock = threading.Lock()

    def find(self, analyst: str, query_id: str) -> Answer | None:
        with self._lock:
            return self._answers.get((analyst, query_id))

    def record(self, answer: Answer) -> Answer:
        with self._lock:
            return self._answers.setdefault((answer.analyst, answer.query_id), answer)

    def close(self) -> None:
        pass
