"""The audit log's tables in the node's SQLite state, written inside the caller's transaction.

``audit_log`` holds the entries (their index is the row id: 0, 1, 2, ... without gaps);
``audit_tree`` every complete block of leaves (:mod:`accord.policies.merkle_tree`); ``checkpoints``
each signed checkpoint the node issued, with the cosignatures added since; ``witnessed`` what this
node last cosigned of each other node's log; ``audit_seen`` what the log last recorded of the
agreements, the configuration and the consent register.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from accord.errors import InternalError
from accord.policies.merkle import leaf_hash
from accord.policies.merkle_tree import appended

__all__ = ["AUDIT_TABLES", "append_entries", "block_hash", "log_size", "remember"]

AUDIT_TABLES = {
    "audit_log": "CREATE TABLE audit_log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)",
    "audit_tree": """CREATE TABLE audit_tree (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID""",
    "checkpoints": "CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL)",
    "witnessed": """CREATE TABLE witnessed (
        log TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        note TEXT NOT NULL
    ) WITHOUT ROWID""",
    "audit_seen": """CREATE TABLE audit_seen (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID""",
}


def log_size(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT max(idx) FROM audit_log").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def block_hash(con: sqlite3.Connection, level: int, index: int) -> bytes:
    row = con.execute("SELECT hash FROM audit_tree WHERE level = ? AND idx = ?", (level, index)).fetchone()
    if row is None or not isinstance(row[0], bytes):
        raise InternalError(f"the audit log has no hash for leaves at level {level}, index {index}")
    return row[0]


def append_entries(con: sqlite3.Connection, entries: Sequence[bytes]) -> int:
    """Inside a transaction: append ``entries`` and the blocks they complete; the new size."""
    size = log_size(con)
    for entry in entries:
        con.execute("INSERT INTO audit_log (idx, entry) VALUES (?, ?)", (size, entry))
        for level, index, h in appended(size, leaf_hash(entry), lambda lv, ix: block_hash(con, lv, ix)):
            con.execute("INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)", (level, index, h))
        size += 1
    return size


def remember(con: sqlite3.Connection, seen: Mapping[tuple[str, str], str]) -> None:
    """Inside a transaction: what the log now records of each (kind, key)."""
    for (kind, key), value in seen.items():
        con.execute(
            "INSERT INTO audit_seen (kind, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            (kind, key, value),
        )
