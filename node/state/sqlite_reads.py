"""Reading a node's SQLite state: what the node itself and operators' tools read (the answers, the
ledger, the audit log), and :class:`StateReader`, the read-only view for the tools."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from fractions import Fraction
from pathlib import Path

from accord.errors import ConfigError, InternalError
from accord.node.state.base import Answer, LedgerLine, Usage, usage_from
from accord.node.state.sqlite_audit import block_hash, log_size
from accord.node.state.sqlite_schema import connect
from accord.policies.budget import Spent
from accord.policies.merkle_tree import tree_root
from accord.query.epsilon import Epsilon

__all__ = ["COLUMNS", "Reads", "StateReader", "answer_row", "spent_in"]

COLUMNS = (
    "analyst, query_id, request_digest, payload_digest, envelope, dataset, epsilon, answered_at, release, "
    "agreement"
)


class Reads:
    """What both the node and operators' tools read from a state connection."""

    path: Path
    _con: sqlite3.Connection
    _lock: threading.Lock

    def find(self, analyst: str, query_id: str) -> Answer | None:
        with self._lock:
            row = self._con.execute(
                f"SELECT {COLUMNS} FROM answers WHERE analyst = ? AND query_id = ?", (analyst, query_id)
            ).fetchone()
        return None if row is None else answer_row(row)

    def spent(self, agreement: str, analyst: str) -> Spent:
        with self._lock:
            return spent_in(self._con, agreement, analyst)

    def ledger(self) -> list[LedgerLine]:
        with self._lock:
            rows = self._con.execute(
                "SELECT agreement, analyst, epsilon, answered FROM spent ORDER BY agreement, analyst"
            ).fetchall()
        return [LedgerLine(a, n, _epsilon(e), int(k)) for a, n, e, k in rows]

    def usage(self) -> dict[str, Usage]:
        lines = self.ledger()
        with self._lock:
            rows = self._con.execute("SELECT agreement, reason, count FROM refusals").fetchall()
        refusals: dict[str, dict[str, int]] = {}
        for agreement, reason, count in rows:
            refusals.setdefault(agreement, {})[reason] = int(count)
        return usage_from(lines, refusals)

    def seen(self, kind: str) -> dict[str, str]:
        with self._lock:
            rows = self._con.execute("SELECT key, value FROM audit_seen WHERE kind = ?", (kind,)).fetchall()
        return {str(k): str(v) for k, v in rows}

    def log_size(self) -> int:
        with self._lock:
            return log_size(self._con)

    def log_entries(self, start: int, end: int) -> list[bytes]:
        with self._lock:
            rows = self._con.execute(
                "SELECT entry FROM audit_log WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
            ).fetchall()
        return [_blob(r[0]) for r in rows]

    def log_hash(self, level: int, index: int) -> bytes:
        with self._lock:
            return block_hash(self._con, level, index)

    def log_root(self, size: int) -> bytes:
        """The Merkle root of the first ``size`` entries."""
        return tree_root(size, self.log_hash)

    def checkpoints(self, since: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._con.execute(
                "SELECT size, note FROM checkpoints WHERE size >= ? ORDER BY size LIMIT ?", (since, limit)
            ).fetchall()
        return [(int(s), str(n)) for s, n in rows]

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def witnessed(self, log: str) -> tuple[int, bytes, str] | None:
        with self._lock:
            row = self._con.execute("SELECT size, root, note FROM witnessed WHERE log = ?", (log,)).fetchone()
        return None if row is None else (int(row[0]), _blob(row[1]), str(row[2]))


class StateReader(Reads):
    """A node's state read by an operator's tool (the ledger, the register), also while the node
    runs; never writes."""

    def __init__(self, path: Path, node: str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(
                f"state file {self.path} does not exist; has the node ever run with this config?"
            )
        self._lock = threading.Lock()
        self._con = connect(self.path, node, write=False)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _epsilon(text: object) -> Epsilon:
    return Epsilon(Fraction(str(text)))


def spent_in(con: sqlite3.Connection, agreement: str, analyst: str) -> Spent:
    total, mine, answered = Epsilon.zero(), Epsilon.zero(), 0
    for who, text, count in con.execute(
        "SELECT analyst, epsilon, answered FROM spent WHERE agreement = ?", (agreement,)
    ):
        total = total + _epsilon(text)
        if who == analyst:
            mine, answered = _epsilon(text), int(count)
    return Spent(mine, total, answered)


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InternalError("the node state holds a malformed answer (a text where bytes belong)")
    return value


def answer_row(row: tuple[object, ...]) -> Answer:
    (
        analyst,
        query_id,
        request_digest,
        payload_digest,
        envelope,
        dataset,
        epsilon,
        answered_at,
        release,
        agreement,
    ) = row
    return Answer(
        analyst=str(analyst),
        query_id=str(query_id),
        request_digest=_blob(request_digest),
        payload_digest=_blob(payload_digest),
        envelope=_blob(envelope),
        dataset=str(dataset),
        epsilon=str(epsilon),
        answered_at=datetime.fromisoformat(str(answered_at)),
        release=_blob(release),
        agreement=str(agreement),
    )
