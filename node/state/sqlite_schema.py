"""The SQLite state file's schema and how a connection to it is opened: write-ahead logging and
full-synchronous commits for the node, read-only for operators' tools; one schema version in
``PRAGMA user_version``, older files upgraded in place, newer, foreign or damaged ones refused
with what to do; the file records the node it belongs to."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from accord.errors import ConfigError
from accord.node.state.sqlite_audit import AUDIT_TABLES

__all__ = ["SCHEMA_VERSION", "TABLES", "connect"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
TABLES = {
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "answers": """CREATE TABLE answers (
        analyst TEXT NOT NULL,
        query_id TEXT NOT NULL,
        request_digest BLOB NOT NULL,
        payload_digest BLOB NOT NULL,
        envelope BLOB NOT NULL,
        dataset TEXT NOT NULL,
        epsilon TEXT NOT NULL,
        answered_at TEXT NOT NULL,
        release BLOB NOT NULL,
        agreement TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (analyst, query_id)
    ) WITHOUT ROWID""",
    "spent": """CREATE TABLE spent (
        agreement TEXT NOT NULL,
        analyst TEXT NOT NULL,
        epsilon TEXT NOT NULL,
        answered INTEGER NOT NULL,
        PRIMARY KEY (agreement, analyst)
    ) WITHOUT ROWID""",
    "refusals": """CREATE TABLE refusals (
        agreement TEXT NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (agreement, reason)
    ) WITHOUT ROWID""",
    "secure_participants": """CREATE TABLE secure_participants (
        analyst TEXT NOT NULL,
        query_id TEXT NOT NULL,
        participants TEXT NOT NULL,
        PRIMARY KEY (analyst, query_id)
    ) WITHOUT ROWID""",
    **AUDIT_TABLES,
}


def connect(path: Path, node: str, write: bool) -> sqlite3.Connection:
    where = f"state file {path}"
    try:
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as err:
        raise ConfigError(
            f"{where} cannot be opened ({err}); check the folder exists and is writable"
        ) from None
    try:
        if write:
            os.chmod(path, 0o600)
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"{where}: SQLite refused write-ahead logging (journal mode {mode})")
            con.execute("PRAGMA synchronous = FULL")
        con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            _migrate(con, node, where, write)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if not write:
            con.execute("PRAGMA query_only = ON")
    except sqlite3.OperationalError as err:
        con.close()
        raise ConfigError(f"{where} cannot be used ({err}); check the file and its folder") from None
    except sqlite3.DatabaseError:
        con.close()
        raise ConfigError(
            f"{where} is not an Accord state database (or is damaged); restore it from a backup, or move it "
            "away to start with an empty state (retries of earlier queries are then answered afresh, and "
            "budgets start again from nothing)"
        ) from None
    except BaseException:
        con.close()
        raise
    return con


def _migrate(con: sqlite3.Connection, node: str, where: str, write: bool) -> None:
    version = int(con.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{where} was written by a newer Accord (schema {version}, this one reads {SCHEMA_VERSION}); "
            "upgrade Accord on this node"
        )
    if version == 0:
        tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise ConfigError(
                f"{where} is an SQLite database but not an Accord state file; give [state] path a file "
                "of its own"
            )
        if not write:
            raise ConfigError(f"{where} is empty; start the node once to create its state")
        for statement in TABLES.values():
            con.execute(statement)  # DDL is transactional in SQLite: all or nothing
        con.execute("INSERT INTO meta (key, value) VALUES ('node', ?)", (node,))
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        log.info("created the node state in %s", where)
        return
    owner = con.execute("SELECT value FROM meta WHERE key = 'node'").fetchone()
    if owner is None or owner[0] != node:
        raise ConfigError(
            f"{where} belongs to node {owner[0] if owner else '(unknown)'!r}, not {node!r}; give each "
            "node its own [state] path"
        )
    if version < SCHEMA_VERSION:
        if not write:
            raise ConfigError(f"{where} has an older schema; start the node once to upgrade it")
        if version < 2:
            con.execute("ALTER TABLE answers ADD COLUMN agreement TEXT NOT NULL DEFAULT ''")
            con.execute(TABLES["spent"])
            con.execute(TABLES["refusals"])
        if version < 3:
            for statement in AUDIT_TABLES.values():  # 2 -> 3: the audit log starts empty
                con.execute(statement)
        # 3 -> 4: secure aggregation's participant sets
        con.execute(TABLES["secure_participants"].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        log.info("upgraded the node state in %s to schema %d", where, SCHEMA_VERSION)
