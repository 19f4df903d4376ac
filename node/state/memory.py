"""The in-memory state backend: the same contract as SQLite, forgotten when the process ends.

For tests and benchmarks (``[state] backend = "memory"``): a node that restarts with it answers a
retried query id again with fresh noise and forgets every budget spent, so production nodes use
SQLite.
"""

from __future__ import annotations

import threading

from accord.node.state.base import Answer, LedgerLine, NodeState, Usage, usage_from
from accord.policies.budget import Charge, Spent, check_fits
from accord.query.epsilon import Epsilon

__all__ = ["MemoryState"]


class MemoryState(NodeState):
    """Every answer and the ledger in dicts, guarded by one lock."""

    def __init__(self, node: str = "node") -> None:
        self._node = node
        self._answers: dict[tuple[str, str], Answer] = {}
        self._spent: dict[tuple[str, str], tuple[Epsilon, int]] = {}
        self._refused: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def find(self, analyst: str, query_id: str) -> Answer | None:
        with self._lock:
            return self._answers.get((analyst, query_id))

    def _spent_locked(self, agreement: str, analyst: str) -> Spent:
        mine, answered = self._spent.get((agreement, analyst), (Epsilon.zero(), 0))
        total = Epsilon.zero()
        for (a, _), (eps, _) in self._spent.items():
            if a == agreement:
                total = total + eps
        return Spent(mine, total, answered)

    def record(self, answer: Answer, charge: Charge | None = None) -> Answer:
        with self._lock:
            key = (answer.analyst, answer.query_id)
            known = self._answers.get(key)
            if known is not None:
                return known
            if charge is not None:
                check_fits(
                    charge, self._spent_locked(charge.agreement, answer.analyst), answer.analyst, self._node
                )
                eps, n = self._spent.get((charge.agreement, answer.analyst), (Epsilon.zero(), 0))
                self._spent[(charge.agreement, answer.analyst)] = (eps + charge.epsilon, n + 1)
            self._answers[key] = answer
            return answer

    def spent(self, agreement: str, analyst: str) -> Spent:
        with self._lock:
            return self._spent_locked(agreement, analyst)

    def count_refusal(self, agreement: str, reason: str) -> None:
        with self._lock:
            counts = self._refused.setdefault(agreement, {})
            counts[reason] = counts.get(reason, 0) + 1

    def ledger(self) -> list[LedgerLine]:
        with self._lock:
            return [LedgerLine(a, n, eps, count) for (a, n), (eps, count) in sorted(self._spent.items())]

    def usage(self) -> dict[str, Usage]:
        lines = self.ledger()
        with self._lock:
            refusals = {a: dict(r) for a, r in self._refused.items()}
        return usage_from(lines, refusals)

    def close(self) -> None:
        pass
