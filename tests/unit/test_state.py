"""The node-state contract, run against every backend (memory and SQLite), and what only a durable
backend must also survive: a reopen, a second process, a damaged file, and a writer killed with
SIGKILL in the middle of its writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from accord.errors import ConfigError, InternalError
from accord.node.config import StateConfig
from accord.node.state import Answer, MemoryState, NodeState, SqliteState, open_state
from tests.rooms import ROOT

BACKENDS = ("memory", "sqlite")


def answer(query_id: str = "q-1", analyst: str = "alice", release: bytes = b"\x00\xffrelease") -> Answer:
    return Answer(
        analyst=analyst,
        query_id=query_id,
        request_digest=hashlib.sha256(f"{analyst}/{query_id}".encode()).digest(),
        payload_digest=hashlib.sha256(release).digest(),
        envelope=b"envelope:" + release,
        dataset="citizens",
        epsilon="1/2",
        answered_at=datetime(2026, 12, 3, 7, 0, 1, 123456, tzinfo=UTC),
        release=release,
    )


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeState]:
    config = StateConfig("memory") if request.param == "memory" else StateConfig("sqlite", tmp_path / "s.db")
    with open_state(config, "county") as opened:
        yield opened


def test_unknown_query_is_not_found(state: NodeState) -> None:
    """Property: nothing is found before it is recorded."""
    assert state.find("alice", "q-1") is None


def test_recorded_answer_is_found_byte_for_byte(state: NodeState) -> None:
    """Property: record returns what it stored and find returns it again, every field equal and
    the release byte for byte (bytes that are not text included)."""
    a = answer(release=bytes(range(256)))
    assert state.record(a) == a
    found = state.find("alice", "q-1")
    assert found == a and found is not None and found.release == bytes(range(256))


def test_first_writer_wins(state: NodeState) -> None:
    """Property: a second answer for the same (analyst, query id) does not replace the first;
    record returns the first, so the second release is never sent."""
    first, second = answer(release=b"first"), answer(release=b"second")
    assert state.record(first) == first
    assert state.record(second) == first
    assert state.find("alice", "q-1") == first


def test_query_ids_belong_to_their_analyst(state: NodeState) -> None:
    """Property: the same query id from two analysts is two queries."""
    alice, bob = answer(analyst="alice", release=b"a"), answer(analyst="bob", release=b"b")
    assert state.record(alice) == alice and state.record(bob) == bob
    assert state.find("alice", "q-1") == alice and state.find("bob", "q-1") == bob


def test_concurrent_records_of_one_id_yield_one_release(state: NodeState) -> None:
    """Property: 16 threads recording different releases for one query id at once all get the
    same recorded answer back."""
    barrier = threading.Barrier(16)
    results: list[Answer] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        got = state.record(answer(release=f"release {i}".encode()))
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and len({r.release for r in results}) == 1
    assert state.find("alice", "q-1") == results[0]


def test_concurrent_records_of_many_ids_are_all_kept(state: NodeState) -> None:
    """Property: 24 threads each recording their own answers at once (so commits are shared) all
    get their own answer back, and every one is found afterwards."""
    barrier = threading.Barrier(24)
    wrong: list[str] = []

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(10):
            a = answer(f"t{t}-q{i}", release=f"{t}/{i}".encode())
            if state.record(a) != a:
                wrong.append(a.query_id)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    for t in range(24):
        for i in range(10):
            found = state.find("alice", f"t{t}-q{i}")
            assert found is not None and found.release == f"{t}/{i}".encode()


def test_many_answers(state: NodeState) -> None:
    """Property: every one of many recorded answers is found under its own id."""
    for i in range(200):
        state.record(answer(f"q-{i}", release=f"r{i}".encode()))
    assert all(
        state.find("alice", f"q-{i}") == answer(f"q-{i}", release=f"r{i}".encode()) for i in range(200)
    )


def test_answer_refuses_incomplete_records() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        Answer("alice", "q", b"short", b"x" * 32, b"", "d", "1", datetime.now(UTC), b"")
    with pytest.raises(ValueError, match="timezone"):
        Answer("alice", "q", b"x" * 32, b"x" * 32, b"", "d", "1", datetime(2026, 1, 1), b"")
    assert isinstance(open_state(StateConfig("memory"), "n"), MemoryState)


# ---- durable only ---------------------------------------------------------------------------


def test_sqlite_survives_a_reopen(tmp_path: Path) -> None:
    """Property: what was recorded is found again by a new process-life of the state."""
    path = tmp_path / "state" / "county.sqlite3"
    with SqliteState(path, "county") as state:
        state.record(answer())
    with SqliteState(path, "county") as state:
        assert state.find("alice", "q-1") == answer()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)


def test_sqlite_one_node_per_file(tmp_path: Path) -> None:
    """Property: a second opener of a state file in use is refused with a message naming the file;
    a file of another node is refused too."""
    path = tmp_path / "s.db"
    with SqliteState(path, "county"):
        with pytest.raises(ConfigError, match="in use by another process") as info:
            SqliteState(path, "county")
        assert str(path) in info.value.message
        # another process is refused as well (not only another connection of this one)
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from accord.node.state import SqliteState; SqliteState({str(path)!r}, 'county')",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode != 0 and "in use by another process" in probe.stderr
    with pytest.raises(ConfigError, match="belongs to node 'county', not 'district-a'"):
        SqliteState(path, "district-a")


def test_sqlite_refuses_foreign_damaged_and_newer_files(tmp_path: Path) -> None:
    """Property: a file that is not a state file, a damaged one and one of a newer schema are each
    refused with what to do, and never overwritten."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="not an Accord state database"):
        SqliteState(junk, "county")
    assert junk.read_bytes() == b"this is not a database" * 100
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as con:
        con.execute("CREATE TABLE t (x)")
        con.commit()
    with pytest.raises(ConfigError, match="not an Accord state file"):
        SqliteState(foreign, "county")
    newer = tmp_path / "newer.db"
    SqliteState(newer, "county").close()
    with contextlib.closing(sqlite3.connect(newer)) as con:
        con.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="newer Accord"):
        SqliteState(newer, "county")
    with pytest.raises(ConfigError, match=r"cannot be opened|cannot be used"):
        SqliteState(junk / "below-a-file.db", "county")


_WRITER = """
import sys
from datetime import UTC, datetime
from accord.node.state import Answer, SqliteState
state = SqliteState(sys.argv[1], "county")
i = 0
while True:
    release = (f"release {i} " * 50).encode()
    state.record(Answer("alice", f"q-{i}", bytes(32), bytes(32), b"e", "d", "1", datetime.now(UTC), release))
    print(i, flush=True)  # only once the transaction is committed
    i += 1
"""


def test_sqlite_writer_killed_mid_write_loses_nothing_it_confirmed(tmp_path: Path) -> None:
    """Property: a process SIGKILLed while it records answers as fast as it can leaves a state that
    opens cleanly and holds every answer it had confirmed (record returned), each whole."""
    path = tmp_path / "s.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    confirmed = -1
    for line in proc.stdout:
        confirmed = int(line)
        if confirmed >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    with SqliteState(path, "county") as state:
        for i in range(confirmed + 1):
            found = state.find("alice", f"q-{i}")
            assert found is not None and found.release == (f"release {i} " * 50).encode()


def test_a_failed_group_commit_returns_no_answer_at_all(tmp_path: Path) -> None:
    """Property: if one answer of a shared commit cannot be written, the whole transaction is rolled
    back and every caller of that commit gets an error: none is handed a release that is not on disk."""
    state = SqliteState(tmp_path / "s.db", "county")
    good, bad = answer("q-good"), answer("q-bad")
    object.__setattr__(bad, "release", object())  # sqlite cannot store it: the INSERT fails
    from accord.node.state.sqlite import _Pending

    batch = [_Pending(good, None, ()), _Pending(bad, None, ())]
    state._commit(batch)
    for p in batch:
        with pytest.raises(InternalError):
            p.outcome()
    assert state.find("alice", "q-good") is None and state.find("alice", "q-bad") is None
    assert state.record(good) == good  # the state is usable afterwards
    state.close()


def test_a_query_id_takes_one_participant_set(state: NodeState) -> None:
    """Property: the first participant set recorded for an analyst's query id stays; another set is
    answered with the recorded one (and its entries are not appended); ids are per analyst."""
    before = state.log_size()
    assert state.take_part("alice", "q1", "a,b,c", [b'{"x":1}']) == "a,b,c"
    assert state.take_part("alice", "q1", "a,b", [b'{"x":2}']) == "a,b,c"
    assert state.take_part("alice", "q1", "a,b,c", [b'{"x":3}']) == "a,b,c"
    assert state.take_part("bob", "q1", "a,b", []) == "a,b"
    assert state.log_entries(before, state.log_size()) == [b'{"x":1}', b'{"x":3}']


def test_sqlite_keeps_participant_sets_across_a_reopen(tmp_path: Path) -> None:
    with SqliteState(tmp_path / "s.db", "n") as state:
        state.take_part("alice", "q1", "a,b,c")
    with SqliteState(tmp_path / "s.db", "n") as state:
        assert state.take_part("alice", "q1", "a,b") == "a,b,c"
