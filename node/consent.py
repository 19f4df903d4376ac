"""The node's consent register: every consent record, durable, with its full history.

A SQLite file of its own (``[consent] path``; WAL, ``synchronous = FULL``), so that an operator's
commands (``accord consent import``, ``set``, ``withdraw``) write it while the node runs and reads
it. Two tables: ``events`` keeps every record ever added, in order (the history, never changed),
and ``current`` each (person, purpose)'s latest choice. Each change bumps a version the node
checks before every query, so a change applies to every query that starts after it.

The person identifiers are the values of the datasets' privacy unit, compared as text. They are
never logged, and leave this file only as the set of people a query must leave out (or, for an
opt-in purpose, the only people it may count), which the engine applies before any aggregate.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from accord.errors import ConfigError
from accord.node.backend import PersonFilter
from accord.policies.consent import ConsentRecord, ConsentStatus, refuse_future

__all__ = ["ConsentRegister"]

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        person TEXT NOT NULL,
        purpose TEXT NOT NULL,
        status TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        source TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS current (
        person TEXT NOT NULL,
        purpose TEXT NOT NULL,
        status TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (purpose, person)
    ) WITHOUT ROWID""",
)
_APPLICATION_ID = 0x41434F4E  # "ACON": an Accord consent register


class ConsentRegister:
    """The consent register in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            os.chmod(self.path, 0o600)
            if str(con.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower() != "wal":
                raise ConfigError(f"consent register {self.path}: SQLite refused write-ahead logging")
            con.execute("PRAGMA synchronous = FULL")
            app = int(con.execute("PRAGMA application_id").fetchone()[0])
            tables = int(con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
            if app != _APPLICATION_ID and tables:
                con.close()
                raise ConfigError(
                    f"{self.path} is not an Accord consent register; give [consent] path a file of its own"
                )
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            con.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise ConfigError(
                f"consent register {self.path} cannot be used ({err}); restore it from a backup or fix "
                "the path"
            ) from None
        except OSError as err:
            raise ConfigError(f"consent register {self.path} cannot be opened ({err.strerror})") from None
        self._con = con

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def add(self, records: Sequence[ConsentRecord], recorded_at: datetime) -> int:
        """Add ``records`` in one transaction (all or none); return how many were added. A record
        dated after ``recorded_at`` (beyond clock skew) is refused: it would outrank every later
        change until its date."""
        for r in records:
            if refuse_future(r.timestamp, recorded_at) is not None:
                raise ConfigError(
                    f"a consent record for purpose {r.purpose} is dated {r.timestamp.isoformat()}, in the "
                    "future; date each choice when the person made it (nothing was added)"
                )
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    seq = con.execute(
                        "INSERT INTO events (person, purpose, status, timestamp, source, recorded_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            r.person,
                            r.purpose,
                            r.status.value,
                            r.timestamp.isoformat(),
                            r.source,
                            recorded_at.isoformat(),
                        ),
                    ).lastrowid
                    con.execute(
                        "INSERT INTO current (person, purpose, status, timestamp, seq) "
                        "VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (purpose, person) DO UPDATE SET status = excluded.status, "
                        "timestamp = excluded.timestamp, seq = excluded.seq "
                        "WHERE excluded.timestamp >= current.timestamp",
                        (r.person, r.purpose, r.status.value, r.timestamp.isoformat(), seq),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        log.info("consent register: %d record(s) added", len(records))
        return len(records)

    def version(self) -> int:
        """Changes so far (the sequence number of the latest record; 0 when empty)."""
        with self._lock:
            row = self._con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def history(self, person: str) -> list[tuple[ConsentRecord, datetime]]:
        """Every record about ``person``, oldest first, with when it was recorded here."""
        with self._lock:
            rows = self._con.execute(
                "SELECT person, purpose, status, timestamp, source, recorded_at FROM events "
                "WHERE person = ? ORDER BY seq",
                (person,),
            ).fetchall()
        return [
            (
                ConsentRecord(p, purpose, ConsentStatus(status), datetime.fromisoformat(ts), source),
                datetime.fromisoformat(recorded),
            )
            for p, purpose, status, ts, source, recorded in rows
        ]

    def current(self, person: str) -> dict[str, ConsentStatus]:
        """``person``'s current choice for each purpose they made one for."""
        with self._lock:
            rows = self._con.execute(
                "SELECT purpose, status FROM current WHERE person = ?", (person,)
            ).fetchall()
        return {purpose: ConsentStatus(status) for purpose, status in rows}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per purpose, how many people currently hold each status (for the operator and the log)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT purpose, status, count(*) FROM current GROUP BY purpose, status"
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for purpose, status, n in rows:
            out.setdefault(purpose, {})[status] = int(n)
        return out

    def filter(self, purpose: str, model: str) -> PersonFilter:
        """The people a query for ``purpose`` under consent ``model`` must leave out (opt-out) or
        may only count (opt-in), at the current version."""
        with self._lock:
            con = self._con
            con.execute("BEGIN")  # one snapshot for the version and the people
            try:
                row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
                if model == "opt-in":
                    statuses: tuple[str, ...] = (ConsentStatus.GIVEN.value,)
                else:
                    statuses = (ConsentStatus.WITHDRAWN.value, ConsentStatus.REFUSED.value)
                marks = ", ".join("?" for _ in statuses)
                people = con.execute(
                    f"SELECT person FROM current WHERE purpose = ? AND status IN ({marks})",
                    (purpose, *statuses),
                ).fetchall()
            finally:
                con.execute("COMMIT")
        mode = "include" if model == "opt-in" else "exclude"
        return PersonFilter(purpose, mode, frozenset(p for (p,) in people), int(row[0]) if row else 0)
