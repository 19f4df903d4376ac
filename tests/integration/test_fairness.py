"""One analyst cannot starve the others: per-analyst limits at the coordinator and at each node.

A real node and coordinator (mTLS, from TOML). Alice floods from 12 threads; Bob asks one query
at a time with a deadline. The coordinator's global limit is small (4 queries at once), so
without per-analyst limits Alice's flood fills it and Bob is refused (the control run shows it);
with them, Alice holds at most 2 of the 4 slots and Bob is always answered in time. Alice's
surplus is refused with RESOURCE_EXHAUSTED and a retry hint, and spends nothing.
"""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import start_coordinator
from accord.errors import ResourceLimit
from accord.node.config import load_node_config
from accord.node.server import start_node
from accord.query.epsilon import Epsilon
from accord.rpc.fairness import FairnessConfig
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    UNLIMITED,
    Federation,
    coordinator_config,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    write_coordinator,
    write_node,
)

LISTEN = "127.0.0.1:0"
SQL = "SELECT COUNT(*) AS n FROM pums WHERE age > 30"
FLOOD_THREADS = 12
BOB_QUERIES = 8
BOB_DEADLINE = 10.0


def _federation(root: Path, pki: TestPki, fairness: FairnessConfig) -> Federation:
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    node = write_node(
        root,
        node_config(root, "county", [pums_dataset(root, "pums", PUMS_PID)], max_workers=8, fairness=fairness),
    )
    running_node = start_node(load_node_config(node), listen=LISTEN)
    config = coordinator_config(
        root,
        {"county": f"127.0.0.1:{running_node.port}"},
        analysts=("alice", "bob"),
        max_in_flight=4,
        fairness=fairness,
    )
    running, service = start_coordinator(
        load_coordinator_config(write_coordinator(root, config)), listen=LISTEN
    )
    return Federation(root, pki, {"county": running_node}, running, service)


def _flood_while_bob_asks(fed: Federation, pki: TestPki) -> tuple[int, list[float | None], int]:
    """(Bob's refusals, the retry hints Alice got, Alice's answers) while Alice floods."""
    stop = threading.Event()
    hints: list[float | None] = []
    answered = 0
    lock = threading.Lock()

    def flood() -> None:
        nonlocal answered
        with fed.client(retries=0) as alice:
            while not stop.is_set():
                try:
                    alice.query_release(SQL, "0.01")
                    with lock:
                        answered += 1
                except ResourceLimit as err:
                    with lock:
                        hints.append(err.retry_after_seconds)

    threads = [threading.Thread(target=flood) for _ in range(FLOOD_THREADS)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the flood is under way
    refused = 0
    try:
        with fed.client(tls=pki.analyst("bob"), retries=0) as bob:
            for _ in range(BOB_QUERIES):
                try:
                    assert bob.query_release(SQL, "0.01", timeout=BOB_DEADLINE).rows
                except ResourceLimit:
                    refused += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    return refused, hints, answered


def test_one_analyst_flooding_does_not_starve_another(pki: TestPki, tmp_path: Path) -> None:
    """Property: with per-analyst limits (2 at once, bursts of 10 at 600 a minute), every one of
    Bob's queries is answered within its deadline while Alice floods; Alice is refused with
    RESOURCE_EXHAUSTED and a positive retry hint; and her refused queries spend nothing (her
    budget at the node is exactly her answered queries times their epsilon). Control: without
    per-analyst limits the same flood gets Bob refused."""
    fair = FairnessConfig(max_in_flight=2, per_minute=600, burst=10)
    fed = _federation(tmp_path / "fair", pki, fair)
    try:
        refused, hints, answered = _flood_while_bob_asks(fed, pki)
        time.sleep(1.0)  # the flood spent alice's bucket; asking for her budget is a call too
        with fed.client(retries=0) as alice:
            lines, _ = alice.budget("open")
    finally:
        fed.stop()
    assert refused == 0
    assert hints and all(h is not None and h > 0 for h in hints)
    (line,) = lines["county"]
    assert line.answered == answered
    assert line.analyst_spent == Epsilon(Fraction(answered, 100))  # exactly: refusals spent nothing

    control = _federation(tmp_path / "unfair", pki, UNLIMITED)
    try:
        refused_without, _, _ = _flood_while_bob_asks(control, pki)
    finally:
        control.stop()
    assert refused_without > 0, "the control run should show the flood starving Bob"
