"""The in-memory state backend: the same contract as SQLite, forgotten when the process ends.

For tests and benchmarks (``[state] backend = "memory"``): a node that restarts with it answers a
retried query id again with fresh noise and forgets every budget spent, so production nodes use
SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from accord.node.state.base import Answer, LedgerLine, NodeState, Usage, usage_from
from accord.policies.budget import Charge, Spent, check_fits
from accord.policies.merkle import leaf_hash
from accord.policies.merkle_tree import appended
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
        self._entries: list[bytes] = []
        self._tree: dict[tuple[int, int], bytes] = {}
        self._seen: dict[tuple[str, str], str] = {}
        self._parts: dict[tuple[str, str], str] = {}
        self._checkpoints: dict[int, str] = {}
        self._witnessed: dict[str, tuple[int, bytes, str]] = {}

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

    def _append_locked(self, entries: Sequence[bytes]) -> None:
        for entry in entries:
            size = len(self._entries)
            for level, index, h in appended(size, leaf_hash(entry), lambda lv, ix: self._tree[(lv, ix)]):
                self._tree[(level, index)] = h
            self._entries.append(bytes(entry))

    def record(self, answer: Answer, charge: Charge | None = None, entries: Sequence[bytes] = ()) -> Answer:
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
            self._append_locked(entries)
            return answer

    def append(
        self,
        entries: Sequence[bytes],
        refusal: tuple[str, str] | None = None,
        seen: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        with self._lock:
            self._append_locked(entries)
            if refusal is not None:
                counts = self._refused.setdefault(refusal[0], {})
                counts[refusal[1]] = counts.get(refusal[1], 0) + 1
            self._seen.update(seen or {})
            return len(self._entries)

    def take_part(self, analyst: str, query_id: str, participants: str, entries: Sequence[bytes] = ()) -> str:
        with self._lock:
            known = self._parts.setdefault((analyst, query_id), participants)
            if known == participants:
                self._append_locked(entries)
            return known

    def seen(self, kind: str) -> dict[str, str]:
        with self._lock:
            return {k: v for (t, k), v in self._seen.items() if t == kind}

    def log_size(self) -> int:
        with self._lock:
            return len(self._entries)

    def log_entries(self, start: int, end: int) -> list[bytes]:
        with self._lock:
            return self._entries[start:end]

    def log_hash(self, level: int, index: int) -> bytes:
        with self._lock:
            return self._tree[(level, index)]

    def save_checkpoint(self, size: int, note: str) -> None:
        with self._lock:
            self._checkpoints[size] = note

    def checkpoints(self, since: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        with self._lock:
            return sorted((s, n) for s, n in self._checkpoints.items() if s >= since)[:limit]

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self._lock:
            return max(self._checkpoints.items()) if self._checkpoints else None

    def witnessed(self, log: str) -> tuple[int, bytes, str] | None:
        with self._lock:
            return self._witnessed.get(log)

    def set_witnessed(self, log: str, size: int, root: bytes, note: str) -> None:
        with self._lock:
            self._witnessed[log] = (size, root, note)

    def spent(self, agreement: str, analyst: str) -> Spent:
        with self._lock:
            return self._spent_locked(agreement, analyst)

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
