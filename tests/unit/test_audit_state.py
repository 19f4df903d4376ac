"""The audit log in the node-state contract, run against every backend: entries appended in the
same transaction as an answer or a refusal, the Merkle tree kept beside them (roots and proofs
equal to RFC 6962's over the entries), checkpoints, what a witness cosigned, and, for SQLite,
surviving a reopen and upgrading an older state file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.errors import BudgetExhausted
from accord.node.config import StateConfig
from accord.node.state import NodeState, SqliteState, open_state
from accord.policies import merkle
from accord.policies.budget import Charge
from accord.query.epsilon import Epsilon
from tests.unit.test_state import BACKENDS, answer


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeState]:
    config = StateConfig("memory") if request.param == "memory" else StateConfig("sqlite", tmp_path / "s.db")
    with open_state(config, "county") as opened:
        yield opened


def _entries(n: int, tag: str = "e") -> list[bytes]:
    return [f'{{"{tag}":{i}}}'.encode() for i in range(n)]


def test_roots_and_proofs_match_the_rfc_over_the_entries(state: NodeState) -> None:
    """Property: after appending 37 entries in batches, every prefix's root, every audit path and
    every consistency proof equal RFC 6962's over the same entries, and the entries read back in
    order, byte for byte."""
    entries = _entries(37)
    for lo in range(0, 37, 5):
        assert state.append(entries[lo : lo + 5]) == min(lo + 5, 37)
    leaves = [merkle.leaf_hash(e) for e in entries]
    assert state.log_size() == 37 and state.log_entries(0, 37) == entries
    assert state.log_entries(30, 99) == entries[30:]
    for size in range(1, 38):
        assert state.log_root(size) == merkle.root(leaves[:size])
    for index in (0, 16, 36):
        assert state.inclusion_proof(index, 37) == merkle.inclusion_proof(index, leaves)
    for size1 in (1, 8, 21, 37):
        assert state.consistency_proof(size1, 37) == merkle.consistency_proof(size1, leaves)


def test_an_answers_entry_is_appended_only_if_the_answer_is_recorded(state: NodeState) -> None:
    """Property: record appends its entries with the answer; a retry of a recorded id (nothing
    recorded) and an answer over budget (refused) append nothing."""
    charge = Charge("dsa-1", Epsilon.parse("1/2"), Epsilon.parse("1/2"), Epsilon.parse("10"))
    state.record(answer("q-1"), charge, [b"first"])
    state.record(answer("q-1"), charge, [b"retry"])
    with pytest.raises(BudgetExhausted):
        state.record(answer("q-2"), charge, [b"over"])
    assert state.log_entries(0, 10) == [b"first"]


def test_a_refusal_is_counted_with_its_entry_and_seen_values_kept(state: NodeState) -> None:
    """Property: append counts a refusal for the register and remembers seen values in the same
    call; seen values of one kind are read back, the latest winning."""
    state.append(
        [b"refused"], refusal=("dsa-1", "FIELD_NOT_IN_AGREEMENT"), seen={("agreement", "dsa-1"): "aa"}
    )
    state.append([b"changed"], seen={("agreement", "dsa-1"): "bb", ("config", "county"): "cc"})
    assert state.usage()["dsa-1"].refused == {"FIELD_NOT_IN_AGREEMENT": 1}
    assert state.seen("agreement") == {"dsa-1": "bb"} and state.seen("config") == {"county": "cc"}
    assert state.log_size() == 2


def test_checkpoints_and_witnessed_heads_are_kept(state: NodeState) -> None:
    """Property: checkpoints are listed by size from a given size, a later note for the same size
    replaces the earlier (more cosignatures), the latest is the largest; a witnessed head is kept
    per log."""
    assert state.latest_checkpoint() is None and state.witnessed("district") is None
    state.save_checkpoint(3, "three")
    state.save_checkpoint(9, "nine")
    state.save_checkpoint(3, "three, cosigned")
    assert state.checkpoints() == [(3, "three, cosigned"), (9, "nine")]
    assert state.checkpoints(since=4) == [(9, "nine")] and state.checkpoints(limit=1) == [
        (3, "three, cosigned")
    ]
    assert state.latest_checkpoint() == (9, "nine")
    state.set_witnessed("district", 5, b"r" * 32, "note")
    state.set_witnessed("district", 6, b"s" * 32, "note 2")
    assert state.witnessed("district") == (6, b"s" * 32, "note 2")


def test_the_log_survives_a_reopen(tmp_path: Path) -> None:
    """Property: a reopened SQLite state has the same entries, roots and checkpoints."""
    path = tmp_path / "s.db"
    with SqliteState(path, "county") as state:
        state.append(_entries(11))
        state.save_checkpoint(11, "note")
        root = state.log_root(11)
    with SqliteState(path, "county") as state:
        assert state.log_size() == 11 and state.log_root(11) == root
        assert state.latest_checkpoint() == (11, "note")
        state.append([b"more"])
        assert state.log_root(12) == merkle.root([merkle.leaf_hash(e) for e in [*_entries(11), b"more"]])


def test_a_schema_2_state_file_is_upgraded_with_an_empty_log(tmp_path: Path) -> None:
    """Property: a state file of schema 2 (before the audit log) keeps its answers and gains an
    empty log when the node opens it."""
    path = tmp_path / "s.db"
    with SqliteState(path, "county") as state:
        state.record(answer("q-1"))
    con = sqlite3.connect(path)
    for table in ("audit_log", "audit_tree", "checkpoints", "witnessed", "audit_seen"):
        con.execute(f"DROP TABLE {table}")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with SqliteState(path, "county") as state:
        assert state.find("alice", "q-1") is not None
        assert state.log_size() == 0
        state.append([b"x"])
        assert state.log_entries(0, 1) == [b"x"]
