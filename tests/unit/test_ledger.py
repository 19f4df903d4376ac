"""The privacy-budget ledger in the node's state, run against every backend: exact arithmetic, both
caps, a retry never charged twice, a refused charge recording nothing, many threads never
overspending, refusals counted; and for SQLite: an older state file upgraded in place, and the
ledger read by an operator's tool while the node holds the file."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from accord.errors import BudgetExhausted, ConfigError
from accord.node.config import StateConfig
from accord.node.state import NodeState, SqliteState, StateReader, open_state
from accord.policies.budget import Charge
from accord.query.epsilon import Epsilon
from tests.unit.test_state import answer


def eps(text: str) -> Epsilon:
    return Epsilon(Fraction(text))


def charge(epsilon: str, per_analyst: str = "1", total: str = "2", agreement: str = "dsa-1") -> Charge:
    return Charge(agreement, eps(epsilon), eps(per_analyst), eps(total))


def paid(query_id: str, analyst: str = "alice", epsilon: str = "1/3") -> object:
    a = answer(query_id, analyst)
    return replace(
        a,
        epsilon=epsilon,
        agreement="dsa-1",
        request_digest=hashlib.sha256(f"{analyst}/{query_id}/{epsilon}".encode()).digest(),
    )


@pytest.fixture(params=("memory", "sqlite"))
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeState]:
    config = StateConfig("memory") if request.param == "memory" else StateConfig("sqlite", tmp_path / "s.db")
    with open_state(config, "county") as opened:
        yield opened


def test_exact_thirds_fill_a_cap_of_one_exactly(state: NodeState) -> None:
    """Property: three charges of 1/3 spend exactly 1 (no float creep): a fourth of any size is
    refused, and the refusal says 0 is left for the analyst and what is left for the agreement."""
    for i in range(3):
        state.record(paid(f"q-{i}"), charge("1/3"))  # type: ignore[arg-type]
    spent = state.spent("dsa-1", "alice")
    assert spent.analyst == eps("1") and spent.total == eps("1") and spent.answered == 3
    with pytest.raises(BudgetExhausted) as info:
        state.record(paid("q-3", epsilon="1/1000000"), charge("1/1000000"))  # type: ignore[arg-type]
    assert (
        "alice has 0 left (of 1)" in info.value.message
        and "the agreement has 1 left (of 2)" in info.value.message
    )
    assert state.find("alice", "q-3") is None  # a refused charge records nothing
    assert state.spent("dsa-1", "alice").analyst == eps("1")


def test_the_total_cap_binds_all_analysts_together(state: NodeState) -> None:
    state.record(paid("a", "alice"), charge("1"))  # type: ignore[arg-type]
    state.record(paid("b", "bob"), charge("1/2"))  # type: ignore[arg-type]
    with pytest.raises(BudgetExhausted) as info:
        state.record(paid("c", "carol"), charge("3/4"))  # type: ignore[arg-type]
    assert info.value.subject == "agreement dsa-1" and info.value.remaining == "1/2"
    state.record(paid("c", "carol"), charge("1/2"))  # type: ignore[arg-type]
    assert state.spent("dsa-1", "carol").total == eps("2")
    assert [(line.analyst, line.spent, line.answered) for line in state.ledger()] == [
        ("alice", eps("1"), 1),
        ("bob", eps("1/2"), 1),
        ("carol", eps("1/2"), 1),
    ]


def test_a_retry_is_never_charged_twice(state: NodeState) -> None:
    first = paid("q-1")
    assert state.record(first, charge("1/3")) == first  # type: ignore[arg-type]
    for _ in range(5):
        assert state.record(paid("q-1"), charge("1/3")) == first  # type: ignore[arg-type]
    assert state.spent("dsa-1", "alice").analyst == eps("1/3")
    assert state.spent("dsa-1", "alice").answered == 1


def test_agreements_are_separate_budgets(state: NodeState) -> None:
    state.record(paid("q-1"), charge("1", agreement="dsa-1"))  # type: ignore[arg-type]
    state.record(paid("q-2"), charge("1", agreement="dsa-2"))  # type: ignore[arg-type]
    assert state.spent("dsa-1", "alice").analyst == eps("1") == state.spent("dsa-2", "alice").analyst


def test_many_threads_never_overspend(state: NodeState) -> None:
    """Property: 40 threads each trying 5 charges of 1/10 against a cap of 2 for the analyst: exactly
    20 are recorded, the rest refused, and the ledger says exactly 2."""
    barrier = threading.Barrier(40)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(5):
            try:
                state.record(paid(f"t{t}-{i}"), charge("1/10", per_analyst="2", total="100"))  # type: ignore[arg-type]
                ok = True
            except BudgetExhausted:
                ok = False
            with lock:
                outcomes.append(ok)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(True) == 20 and len(outcomes) == 200
    assert state.spent("dsa-1", "alice").analyst == eps("2")
    recorded = sum(state.find("alice", f"t{t}-{i}") is not None for t in range(40) for i in range(5))
    assert recorded == 20


def test_refusals_are_counted_per_agreement_and_reason(state: NodeState) -> None:
    state.record(paid("q-1"), charge("1/2"))  # type: ignore[arg-type]
    for reason in ("FIELD_USE_NOT_ALLOWED", "FIELD_USE_NOT_ALLOWED", "BUDGET_EXHAUSTED"):
        state.append([], refusal=("dsa-1", reason))
    state.append([], refusal=("dsa-2", "AGREEMENT_EXPIRED"))
    usage = state.usage()
    assert usage["dsa-1"].answered == 1 and usage["dsa-1"].spent == eps("1/2")
    assert usage["dsa-1"].refused == {"FIELD_USE_NOT_ALLOWED": 2, "BUDGET_EXHAUSTED": 1}
    assert usage["dsa-2"].answered == 0 and usage["dsa-2"].refused_total == 1


def test_an_operator_reads_the_ledger_while_the_node_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteState(path, "county") as node:
        node.record(paid("q-1"), charge("1/3"))  # type: ignore[arg-type]
        with StateReader(path, "county") as reader:
            assert reader.spent("dsa-1", "alice").analyst == eps("1/3")
            node.record(paid("q-2"), charge("1/3"))  # type: ignore[arg-type]
            assert reader.ledger()[0].spent == eps("2/3")  # sees the node's later commits
            with pytest.raises(sqlite3.OperationalError):  # and can never write
                reader._con.execute("DELETE FROM spent")
    with pytest.raises(ConfigError, match="belongs to node 'county'"):
        StateReader(path, "district-a")
    with pytest.raises(ConfigError, match="does not exist"):
        StateReader(tmp_path / "none.db", "county")


def test_a_schema_1_state_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """Property: a state file written before budgets existed (schema 1) is upgraded when the node
    opens it: its answers are kept (agreement empty, nothing charged) and budgets start at 0."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE answers (
            analyst TEXT NOT NULL, query_id TEXT NOT NULL, request_digest BLOB NOT NULL,
            payload_digest BLOB NOT NULL, envelope BLOB NOT NULL, dataset TEXT NOT NULL,
            epsilon TEXT NOT NULL, answered_at TEXT NOT NULL, release BLOB NOT NULL,
            PRIMARY KEY (analyst, query_id)) WITHOUT ROWID;
        INSERT INTO meta VALUES ('node', 'county');
        PRAGMA user_version = 1;
        """
    )
    old = answer("old-1")
    con.execute(
        "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (old.analyst, old.query_id, old.request_digest, old.payload_digest, old.envelope, old.dataset,
         old.epsilon, old.answered_at.isoformat(), old.release),
    )  # fmt: skip
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="older schema"):
        StateReader(path, "county")  # a reader never upgrades
    with SqliteState(path, "county") as state:
        assert state.find("alice", "old-1") == old
        assert state.spent("dsa-1", "alice").analyst == Epsilon.zero()
        state.record(paid("q-1"), charge("1/3"))  # type: ignore[arg-type]
    with StateReader(path, "county") as reader:
        assert reader.usage()["dsa-1"].answered == 1
