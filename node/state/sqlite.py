"""The durable state backend: one SQLite file per node, every answer and its charge committed before
the release is sent.

* **Durable commits**: write-ahead logging with ``synchronous = FULL``, so a transaction that
  :meth:`SqliteState.record` has committed is on disk (its WAL frame fsync-ed) before the release
  leaves the node; a process killed at any instant leaves either the whole answer, charge included,
  or none of it.
* **One node per file**: the node holds an exclusive lock on ``<file>.lock`` (``flock``) for its
  whole life, so a second node started with the same state file is refused at start-up instead of
  sharing (and double-spending) it. Operators' tools read the file meanwhile
  (:class:`StateReader`: the budget ledger, the public register).
* **One schema version**, in ``PRAGMA user_version`` (older files are migrated); a file from a newer
  Accord, or one that is not an Accord state file, is refused with a message saying what to do. The
  file records the name of its node and refuses another.

Every answer is recorded in a transaction (``BEGIN IMMEDIATE`` … ``COMMIT``): if its (analyst, query
id) is recorded already, that answer is what is recorded (nothing charged); otherwise its charge is
checked against the agreement's caps with the ledger as the transaction sees it, then the answer is
inserted and the ledger updated. Answers that arrive while a commit is being written share the
next transaction (group commit: one fsync for all of them, each caller released only once its own
answer is on disk); one answer over budget fails alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import IO

from accord.errors import BudgetExhausted, ConfigError, InternalError
from accord.node.state.base import Answer, NodeState, StateInUse
from accord.node.state.sqlite_audit import append_entries, remember
from accord.node.state.sqlite_reads import COLUMNS, Reads, StateReader, answer_row, spent_in
from accord.node.state.sqlite_schema import SCHEMA_VERSION, connect
from accord.policies.budget import Charge, check_fits

__all__ = ["SCHEMA_VERSION", "SqliteState", "StateReader"]

log = logging.getLogger(__name__)


class _Pending:
    """One answer (and its charge) waiting for its commit, and what became of it."""

    def __init__(self, answer: Answer, charge: Charge | None, entries: Sequence[bytes]) -> None:
        self.answer = answer
        self.charge = charge
        self.entries = entries
        self.done = False
        self.result: Answer | None = None
        self.error: InternalError | BudgetExhausted | None = None

    def outcome(self) -> Answer:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class SqliteState(Reads, NodeState):
    """The state of node ``node`` in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(self, path: Path, node: str) -> None:
        self.path = Path(path)
        self.node = node
        self._lock = threading.Lock()  # the connection: one user at a time
        self._queue = threading.Condition()  # the answers waiting to be committed
        self._pending: list[_Pending] = []
        self._committing = False
        self._lockfile = self._take_lock()
        try:
            self._con = connect(self.path, node, write=True)
        except BaseException:
            self._lockfile.close()
            raise

    def _take_lock(self) -> IO[bytes]:
        where = f"state file {self.path}"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = open(str(self.path) + ".lock", "ab")  # noqa: SIM115 (held for the node's life)
        except OSError as err:
            raise ConfigError(
                f"{where} cannot be opened ({err.strerror}); check the folder exists and is writable, or set "
                "[state] path in the node config"
            ) from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StateInUse(
                f"{where} is in use by another process (is another node running with this config?); "
                "stop it, or give this node its own [state] path"
            ) from None
        return lock

    def record(self, answer: Answer, charge: Charge | None = None, entries: Sequence[bytes] = ()) -> Answer:
        """Record ``answer`` and its ``charge`` (see :meth:`NodeState.record`) with **group
        commit**: answers that arrive while a commit is on its way to disk wait, and the next
        committer writes all of them in one transaction with one fsync. Each caller returns only
        once its own answer is committed, so nothing is sent early; under load the fsyncs are
        shared."""
        mine = _Pending(answer, charge, tuple(entries))
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
        """One transaction for every answer in ``batch``. Each pending answer learns what is
        recorded for it only once ``COMMIT`` returned; an answer over budget fails alone; if
        anything else fails, every answer of the batch fails and nothing is returned."""
        outcomes: list[Answer | BudgetExhausted] = []
        try:
            with self._transaction() as con:
                for p in batch:
                    try:
                        recorded = self._insert(con, p.answer, p.charge)
                        if recorded is p.answer:
                            append_entries(con, p.entries)
                        outcomes.append(recorded)
                    except BudgetExhausted as refused:
                        outcomes.append(refused)
        except Exception as err:
            kind = type(err).__name__
            log.error("state %s: recording answers failed (%s)", self.path, kind)
            failure = InternalError(f"the node could not record the answer in its state ({kind})")
            for p in batch:
                p.error = failure
            return
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BudgetExhausted):
                p.error = outcome
            else:
                p.result = outcome

    def _insert(self, con: sqlite3.Connection, a: Answer, charge: Charge | None) -> Answer:
        """Inside the transaction: what is recorded for ``a``'s key, after inserting and charging
        ``a`` if nothing was (:class:`BudgetExhausted`, writing nothing, if the charge does not fit)."""
        row = con.execute(
            f"SELECT {COLUMNS} FROM answers WHERE analyst = ? AND query_id = ?", (a.analyst, a.query_id)
        ).fetchone()
        if row is not None:  # recorded before (first writer wins): what is recorded is the answer
            return answer_row(row)
        if charge is not None:
            spent = spent_in(con, charge.agreement, a.analyst)
            check_fits(charge, spent, a.analyst, self.node)
            con.execute(
                "INSERT INTO spent (agreement, analyst, epsilon, answered) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (agreement, analyst) DO UPDATE SET epsilon = ?, answered = answered + 1",
                (
                    charge.agreement,
                    a.analyst,
                    str(charge.epsilon),
                    str(spent.analyst + charge.epsilon),
                ),
            )
        con.execute(
            f"INSERT INTO answers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                a.agreement,
            ),
        )
        return a

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one durable write transaction: committed if the block ends,
        rolled back if it raises."""
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def append(
        self,
        entries: Sequence[bytes],
        refusal: tuple[str, str] | None = None,
        seen: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        try:
            with self._transaction() as con:
                size = append_entries(con, entries)
                if refusal is not None:
                    con.execute(
                        "INSERT INTO refusals (agreement, reason, count) VALUES (?, ?, 1) "
                        "ON CONFLICT (agreement, reason) DO UPDATE SET count = count + 1",
                        refusal,
                    )
                remember(con, seen or {})
        except sqlite3.Error as err:
            kind = type(err).__name__
            log.error("state %s: appending to the audit log failed (%s)", self.path, kind)
            raise InternalError(f"the node could not write its audit log ({kind})") from None
        return size

    def take_part(self, analyst: str, query_id: str, participants: str, entries: Sequence[bytes] = ()) -> str:
        # Committed without waiting for the disk (write-ahead log, synchronous = NORMAL): the row and
        # the entry survive a crash of this process, and reach the disk with the next durable commit,
        # the answer's in round 2, in log order. Joining releases nothing; the participant set that
        # binds is the one recorded with the share, durably, in the answer's own transaction.
        try:
            with self._lock:
                con = self._con
                con.execute("PRAGMA synchronous = NORMAL")
                try:
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        row = con.execute(
                            "SELECT participants FROM secure_participants WHERE analyst = ? AND query_id = ?",
                            (analyst, query_id),
                        ).fetchone()
                        if row is None:
                            con.execute(
                                "INSERT INTO secure_participants (analyst, query_id, participants) "
                                "VALUES (?, ?, ?)",
                                (analyst, query_id, participants),
                            )
                        if row is None or row[0] == participants:
                            append_entries(con, entries)
                        con.execute("COMMIT")
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
                finally:
                    con.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as err:
            kind = type(err).__name__
            log.error("state %s: recording a secure aggregation failed (%s)", self.path, kind)
            raise InternalError(f"the node could not record its participation ({kind})") from None
        return participants if row is None else str(row[0])

    def save_checkpoint(self, size: int, note: str) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO checkpoints (size, note) VALUES (?, ?) "
                "ON CONFLICT (size) DO UPDATE SET note = excluded.note",
                (size, note),
            )

    def set_witnessed(self, log: str, size: int, root: bytes, note: str) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO witnessed (log, size, root, note) VALUES (?, ?, ?, ?) ON CONFLICT (log) "
                "DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note",
                (log, size, root, note),
            )

    def close(self) -> None:
        with self._lock:
            self._con.close()
        self._lockfile.close()  # releases the flock
