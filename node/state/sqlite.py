"""The durable state backend: one SQLite file per node, every answer committed before it is sent.

* **Durable commits**: write-ahead logging with ``synchronous = FULL``, so a transaction that
  :meth:`SqliteState.record` has committed is on disk (its WAL frame fsync-ed) before the release
  leaves the node; a process killed at any instant leaves either the whole answer or none of it.
* **One node per file**: the connection holds an exclusive lock for its whole life
  (``locking_mode = EXCLUSIVE``), so a second node started with the same state file is refused at
  start-up instead of sharing (and later double-spending) it.
* **One schema version**, in ``PRAGMA user_version``; a file from a newer Accord, or one that is not
  an Accord state file, is refused with a message saying what to do. The file records the name of
  its node and refuses another.

Every answer is recorded in a transaction (``BEGIN IMMEDIATE`` … ``COMMIT``): insert unless the
``(analyst, query_id)`` is already there, else read back what is recorded. Answers that arrive
while a commit is being written share the next transaction (group commit: one fsync for all of
them, each caller released only once its answer is on disk). The next pieces of work add the
budget charge and the audit entry to the same transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from accord.errors import ConfigError, InternalError
from accord.node.state.base import Answer, NodeState, StateInUse

__all__ = ["SCHEMA_VERSION", "SqliteState"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE answers (
    analyst TEXT NOT NULL,
    query_id TEXT NOT NULL,
    request_digest BLOB NOT NULL,
    payload_digest BLOB NOT NULL,
    envelope BLOB NOT NULL,
    dataset TEXT NOT NULL,
    epsilon TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    release BLOB NOT NULL,
    PRIMARY KEY (analyst, query_id)
) WITHOUT ROWID;
"""
_COLUMNS = (
    "analyst, query_id, request_digest, payload_digest, envelope, dataset, epsilon, answered_at, release"
)


class _Pending:
    """One answer waiting for its commit, and what became of it."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.done = False
        self.result: Answer | None = None
        self.error: InternalError | None = None

    def outcome(self) -> Answer:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class SqliteState(NodeState):
    """The state of node ``node`` in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(self, path: Path, node: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the connection: one user at a time
        self._queue = threading.Condition()  # the answers waiting to be committed
        self._pending: list[_Pending] = []
        self._committing = False
        self._con = self._open(node)

    def _open(self, node: str) -> sqlite3.Connection:
        where = f"state file {self.path}"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(
                f"{where} cannot be opened ({err}); check the folder exists and is writable, or set "
                "[state] path in the node config"
            ) from None
        try:
            os.chmod(self.path, 0o600)
            con.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"{where}: SQLite refused write-ahead logging (journal mode {mode})")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("BEGIN IMMEDIATE")  # takes the exclusive lock, kept until close
            try:
                self._migrate(con, node, where)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as err:
            con.close()
            if "locked" in str(err):
                raise StateInUse(
                    f"{where} is in use by another process (is another node running with this config?); "
                    "stop it, or give this node its own [state] path"
                ) from None
            raise ConfigError(f"{where} cannot be used ({err}); check the file and its folder") from None
        except sqlite3.DatabaseError:
            con.close()
            raise ConfigError(
                f"{where} is not an Accord state database (or is damaged); restore it from a backup, "
                "or move it away to start with an empty state (retries of earlier queries are then "
                "answered afresh)"
            ) from None
        except BaseException:
            con.close()
            raise
        return con

    @staticmethod
    def _migrate(con: sqlite3.Connection, node: str, where: str) -> None:
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise ConfigError(
                    f"{where} is an SQLite database but not an Accord state file; give [state] path "
                    "a file of its own"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)  # DDL is transactional in SQLite: all or nothing
            con.execute("INSERT INTO meta (key, value) VALUES ('node', ?)", (node,))
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            log.info("created the node state in %s", where)
            return
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{where} was written by a newer Accord (schema {version}, this one reads {SCHEMA_VERSION}); "
                "upgrade Accord on this node"
            )
        owner = con.execute("SELECT value FROM meta WHERE key = 'node'").fetchone()
        if owner is None or owner[0] != node:
            raise ConfigError(
                f"{where} belongs to node {owner[0] if owner else '(unknown)'!r}, not {node!r}; give each "
                "node its own [state] path"
            )

    def find(self, analyst: str, query_id: str) -> Answer | None:
        with self._lock:
            row = self._con.execute(
                f"SELECT {_COLUMNS} FROM answers WHERE analyst = ? AND query_id = ?", (analyst, query_id)
            ).fetchone()
        return None if row is None else _answer(row)

    def record(self, answer: Answer) -> Answer:
        """Record ``answer`` (see :meth:`NodeState.record`) with **group commit**: answers that
        arrive while a commit is on its way to disk wait, and the next committer writes all of them
        in one transaction with one fsync. Each caller returns only once its own answer is
        committed, so nothing is sent early; under load the fsyncs are shared."""
        mine = _Pending(answer)
        with self._queue:
            self._pending.append(mine)
            while not mine.done and self._committing:
                self._queue.wait()
            if mine.done:  # another thread committed it with its batch
                return mine.outcome()
            self._committing = True
            batch, self._pending = self._pending, []
        try:
            self._commit(batch)
        finally:
            with self._queue:
                for p in batch:
                    if p.result is None and p.error is None:  # the commit was interrupted
                        p.error = InternalError("the node stopped before it could record the answer")
                    p.done = True
                self._committing = False
                self._queue.notify_all()
        return mine.outcome()

    def _commit(self, batch: list[_Pending]) -> None:
        """One transaction for every answer in ``batch``: insert unless its (analyst, query id) is
        recorded already. Each pending answer learns what is recorded for it only once ``COMMIT``
        returned; if anything fails, every answer of the batch fails and nothing is returned."""
        results: list[Answer] = []
        try:
            with self._lock:
                con = self._con
                con.execute("BEGIN IMMEDIATE")
                try:
                    results = [self._insert(con, p.answer) for p in batch]
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        except Exception as err:
            log.error("state %s: recording answers failed (%s)", self.path, type(err).__name__)
            failure = InternalError(
                f"the node could not record the answer in its state ({type(err).__name__})"
            )
            for p in batch:
                p.error = failure
            return
        for p, result in zip(batch, results, strict=True):
            p.result = result

    @staticmethod
    def _insert(con: sqlite3.Connection, a: Answer) -> Answer:
        """Insert ``a`` unless its key is recorded; what is recorded for the key."""
        inserted = con.execute(
            f"INSERT INTO answers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (analyst, query_id) DO NOTHING",
            (
                a.analyst,
                a.query_id,
                a.request_digest,
                a.payload_digest,
                a.envelope,
                a.dataset,
                a.epsilon,
                a.answered_at.astimezone(UTC).isoformat(),
                a.release,
            ),
        ).rowcount
        if inserted == 1:
            return a
        row = con.execute(  # recorded before (first writer wins): what is recorded is the answer
            f"SELECT {_COLUMNS} FROM answers WHERE analyst = ? AND query_id = ?", (a.analyst, a.query_id)
        ).fetchone()
        return _answer(row)

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InternalError("the node state holds a malformed answer (a text where bytes belong)")
    return value


def _answer(row: tuple[object, ...]) -> Answer:
    analyst, query_id, request_digest, payload_digest, envelope, dataset, epsilon, answered_at, release = row
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
    )
