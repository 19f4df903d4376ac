"""Faults with real processes: nodes and the coordinator killed with SIGKILL (or frozen with
SIGSTOP) while federated queries are in flight.

Three ``accord node serve`` processes (county, district-a, district-b) and one ``accord
coordinator serve`` process run over the synthetic county data, each on a fixed port chosen free
at start, so that a killed process can be restarted on the same address with the same config
and data, the way an operator would restart it. The coordinator's per-node deadline is
:data:`DEADLINE` seconds.

Correctness of an answer is checked against the truth computed from the Parquet files of the
nodes that contributed (not of all nodes): a partial answer must add up only what the surviving
nodes hold, within 10 noise scales. No call may hang: every query carries a client timeout, its
wall time is asserted, and the threads that send queries must all finish.

Every process started here is stopped in ``finally`` (frozen ones are thawed first), and a psutil
check asserts that none is left running.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from accord.coordinator.client import AccordClient
from accord.coordinator.config import NodeEndpoint, write_coordinator_config
from accord.coordinator.nodes import RECONNECT_BACKOFF_MS, NodeClient
from accord.demo.layout import DemoLayout, demo_coordinator_config, write_demo_federation
from accord.demo.processes import Process, accord_command, spawn
from accord.errors import AccordError, PartialFailure, ResourceLimit, Unavailable
from accord.query.release import FederatedRelease
from tests.conftest import TestPki
from tests.integration.federation import OPEN, UNLIMITED, link_certs, open_demo_nodes
from tests.integration.processes import survivors

NODES = ("county", "district-a", "district-b")
VICTIM = "district-b"
PEOPLE = 3000
DEADLINE = 3.0  # the coordinator's per-node deadline (deadline_seconds)
MARGIN = 3.0  # what a call may take beyond the deadline (combination, TLS, a busy machine)
CALL_TIMEOUT = DEADLINE + 10  # the analyst client's own timeout: reaching it would be a hang
START_TIMEOUT = 60.0
RECOVERY_SECONDS = 3.0  # a restarted node must be back in answers this soon after it listens
DOWN_SECONDS = 3.0  # how long a node stays down in the restart test
EPSILON = "1"
SQL = "SELECT district, COUNT(*) AS people FROM citizens GROUP BY district"
DISTRICTS = ("Northbrook", "Southdale")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """The running federation: one process per name, restartable on its fixed port."""

    root: Path
    layout: DemoLayout
    ports: dict[str, int]
    analyst_tls: object
    truth: dict[str, dict[str, int]]  # node -> district -> records
    running: dict[str, Process] = field(default_factory=dict)
    started: list[Process] = field(default_factory=list)  # everything ever started, for clean-up
    frozen: set[str] = field(default_factory=set)

    def config(self, name: str) -> Path:
        return self.root / "coordinator.toml" if name == "coordinator" else self.layout.node_configs[name]

    def start(self, name: str) -> float:
        """Start ``name`` on its fixed port; seconds from spawn until it listens (its readiness)."""
        role = "coordinator" if name == "coordinator" else "node"
        began = time.monotonic()
        proc = spawn(name, accord_command(role, "serve", "--config", str(self.config(name))), self.root)
        self.started.append(proc)
        self.running[name] = proc
        port = proc.wait_for_port(START_TIMEOUT)
        assert port == self.ports[name]
        return time.monotonic() - began

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)
        assert proc.popen.returncode == -signal.SIGKILL
        self.frozen.discard(name)

    def freeze(self, name: str) -> None:
        self.running[name].popen.send_signal(signal.SIGSTOP)
        self.frozen.add(name)

    def thaw(self, name: str) -> None:
        self.running[name].popen.send_signal(signal.SIGCONT)
        self.frozen.discard(name)

    def client(self, retries: int = 2) -> AccordClient:
        return AccordClient(
            f"127.0.0.1:{self.ports['coordinator']}",
            self.analyst_tls,  # type: ignore[arg-type]
            retries=retries,
            agreement=OPEN,
        )

    def restore(self) -> None:
        """Make the federation whole again: thaw frozen processes, restart dead ones."""
        for name in list(self.frozen):
            self.thaw(name)
        for name in (*NODES, "coordinator"):
            proc = self.running.get(name)
            if proc is None or proc.popen.poll() is not None:
                self.start(name)

    def stop_all(self) -> None:
        """SIGTERM every process still running (all at once: they shut down in parallel), then
        SIGKILL any that has not exited within 15 s."""
        alive = [p for p in self.started if p.popen.poll() is None]
        for proc in alive:
            proc.popen.send_signal(signal.SIGCONT)  # a frozen process would not see SIGTERM
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in alive:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)


def _node_truth(layout: DemoLayout) -> dict[str, dict[str, int]]:
    """Records per district at each node, straight from its Parquet file (no DP, no engine)."""
    out: dict[str, dict[str, int]] = {}
    for node in NODES:
        table = pq.read_table(layout.data[node]["citizens"], columns=["district"])
        counts = dict.fromkeys(DISTRICTS, 0)
        for row in pc.value_counts(table.column("district")).to_pylist():
            counts[row["values"]] += row["counts"]
        out[node] = counts
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("faults")
    link_certs(root, pki)
    ports = {name: _free_port() for name in (*NODES, "coordinator")}
    layout = write_demo_federation(
        root, people_per_authority=PEOPLE, seed=5, ports=ports, answer_seconds=0.0, secure_aggregation=False
    )  # independent noise: these tests are of partial answers
    open_demo_nodes(layout.node_configs)
    node_ports = {n: ports[n] for n in NODES}
    coordinator = demo_coordinator_config(
        root, node_ports, ports["coordinator"], deadline_seconds=DEADLINE, fairness=UNLIMITED
    )
    write_coordinator_config(coordinator, root / "coordinator.toml")
    c = Cluster(root, layout, ports, pki.analyst("alice"), _node_truth(layout))
    try:
        for name in NODES:  # spawned together, then waited for: they load their data in parallel
            proc = spawn(name, accord_command("node", "serve", "--config", str(c.config(name))), root)
            c.started.append(proc)
            c.running[name] = proc
        for name in NODES:
            assert c.running[name].wait_for_port(START_TIMEOUT) == ports[name]
        c.start("coordinator")
        yield c
    finally:
        c.stop_all()
        leftovers = survivors(str(root))
        for proc in leftovers:  # only if something leaked: do not leave it running
            proc.kill()
        assert [p.info["cmdline"] for p in leftovers] == []


@pytest.fixture
def fed(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, whole before the test and made whole again after it."""
    cluster.restore()
    try:
        yield cluster
    finally:
        cluster.restore()


# ---- checking answers ------------------------------------------------------------------------


@dataclass
class Call:
    started: float
    ended: float
    release: FederatedRelease | None = None
    error: BaseException | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _ask(client: AccordClient, require_all: bool = False) -> Call:
    started = time.monotonic()
    try:
        release = client.query_release(SQL, EPSILON, require_all=require_all, timeout=CALL_TIMEOUT)
    except BaseException as err:  # recorded and judged by the test, whatever it is
        return Call(started, time.monotonic(), error=err)
    return Call(started, time.monotonic(), release=release)


def _assert_correct(release: FederatedRelease, truth: dict[str, dict[str, int]]) -> None:
    """The answer names every node exactly once (contributing or missing) and each district's
    count is the sum over the contributing nodes only, within 10 noise scales."""
    assert set(release.contributing_nodes).isdisjoint(release.missing)
    assert set(release.contributing_nodes) | set(release.missing) == set(NODES)
    assert [c.name for c in release.columns] == ["district", "people"]
    values = {row.group[0]: row.cells[0].estimate for row in release.rows}
    assert set(values) == set(DISTRICTS)
    for district, estimate in values.items():
        expected = sum(truth[n][district] for n in release.contributing_nodes)
        assert abs(estimate.value - expected) <= 10 * estimate.noise_scale + 1e-9, (
            district,
            estimate,
            expected,
            release.contributing_nodes,
        )


def _assert_in_time(call: Call) -> None:
    assert call.seconds <= DEADLINE + MARGIN, f"{call.seconds:.2f} s (deadline {DEADLINE} s)"


class Hammer:
    """``threads`` analyst threads sending queries back to back until stopped."""

    def __init__(self, cluster: Cluster, threads: int, require_all: bool = False) -> None:
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients = [cluster.client() for _ in range(threads)]
        self._threads = [
            threading.Thread(target=self._run, args=(c, require_all), daemon=True, name=f"analyst-{i}")
            for i, c in enumerate(self._clients)
        ]

    def _run(self, client: AccordClient, require_all: bool) -> None:
        while not self._stop.is_set():
            call = _ask(client, require_all)
            with self._lock:
                self.calls.append(call)

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CALL_TIMEOUT + 5)
        hung = [t.name for t in self._threads if t.is_alive()]
        for c in self._clients:
            c.close()
        assert not hung, f"threads still waiting for an answer: {hung}"

    def wait_for(self, predicate: Callable[[Call], bool], timeout: float) -> Call:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = next((c for c in self.calls if predicate(c)), None)
            if found is not None:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no call matched within {timeout} s")


def _full(call: Call) -> bool:
    return call.release is not None and not call.release.missing


# ---- the tests -------------------------------------------------------------------------------


def test_baseline_full_answers_are_correct(fed: Cluster) -> None:
    """Property: with every process up, an answer comes from all three nodes, is not partial, and
    its counts equal the sum over the three nodes' files within noise (the reference for the rest)."""
    with fed.client() as client:
        call = _ask(client)
    assert call.error is None, call.error
    assert call.release is not None and call.release.contributing_nodes == NODES
    _assert_correct(call.release, fed.truth)


def test_node_killed_mid_query_then_restarted_on_the_same_data(fed: Cluster) -> None:
    """Property: a node SIGKILLed while federated queries are in flight at it (it is frozen first,
    so the kill lands inside them) costs exactly its own contribution: the in-flight default query
    returns well within the deadline with a partial answer whose `missing` names exactly the killed
    node and whose counts are those of the surviving nodes; the in-flight require_all query fails
    with PartialFailure naming it. While it stays down (DOWN_SECONDS), every query is answered at
    once the same way. Restarted on the same data and port, the node is ready within seconds and
    the coordinator includes it again at once (within RECOVERY_SECONDS, no coordinator restart),
    with counts matching all three nodes' files. (Long outages: see the reconnect-backoff test.)"""
    with fed.client() as client:
        assert _full(_ask(client))  # the victim answers before it is killed
        fed.freeze(VICTIM)
        killed_at = float("inf")

        def kill_soon() -> None:
            nonlocal killed_at
            time.sleep(0.5)  # both queries are now waiting for the victim
            killed_at = time.monotonic()
            fed.kill(VICTIM)

        killer = threading.Thread(target=kill_soon, daemon=True)
        killer.start()
        lenient, strict = _concurrently(client, False, True)
        killer.join(10)
        for call in (lenient, strict):
            _assert_in_time(call)
            assert call.started < killed_at < call.ended, "the kill did not land during the query"
            assert call.ended - killed_at < DEADLINE - 0.5, "the coordinator waited for the deadline"
        assert lenient.error is None, lenient.error
        assert lenient.release is not None
        assert set(lenient.release.missing) == {VICTIM}
        assert lenient.release.contributing_nodes == ("county", "district-a")
        _assert_correct(lenient.release, fed.truth)
        assert isinstance(strict.error, PartialFailure), strict.error
        assert set(strict.error.missing) == {VICTIM} and VICTIM in strict.error.message

        while time.monotonic() - killed_at < DOWN_SECONDS:
            call = _ask(client)
            assert call.seconds < DEADLINE, "a query waited for a node that is known to be down"
            assert call.release is not None and set(call.release.missing) == {VICTIM}, call.error
            _assert_correct(call.release, fed.truth)
            time.sleep(0.1)

        readiness = fed.start(VICTIM)
        ready_at = time.monotonic()
        first = _ask(client)
        while not _full(first):
            assert time.monotonic() - ready_at < RECOVERY_SECONDS, first
            time.sleep(0.05)
            first = _ask(client)
        print(f"readiness {readiness:.2f} s; full again {first.ended - ready_at:.2f} s after listening")
        assert first.release is not None
        _assert_correct(first.release, fed.truth)
        for _ in range(3):
            again = _ask(client)
            assert again.release is not None and again.release.contributing_nodes == NODES
            _assert_correct(again.release, fed.truth)
    assert readiness < 20


def _concurrently(client: AccordClient, *require_all: bool) -> list[Call]:
    """One query per flag, all sent at once; every thread must finish (no hang)."""
    calls: dict[int, Call] = {}
    threads = [
        threading.Thread(target=lambda i=i, r=r: calls.__setitem__(i, _ask(client, r)), daemon=True)  # type: ignore[misc]
        for i, r in enumerate(require_all)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CALL_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a query hung"
    return [calls[i] for i in range(len(require_all))]


def test_frozen_node_costs_at_most_the_deadline(fed: Cluster) -> None:
    """Property: a node that stops responding without closing its connections (SIGSTOP) delays an
    answer by at most the coordinator's deadline (+ margin), also once its catalog is due for a
    refresh: the answer is partial, names the node with "deadline exceeded" and is correct for the
    others; require_all fails naming it; once the node resumes, answers include it again at once.
    (The coordinator used to refresh a stale catalog before the query, waiting up to 5 s for a
    frozen node's catalog and then the deadline again; it now refreshes it in the background.)"""
    with fed.client() as client:
        assert _full(_ask(client))
        fed.freeze(VICTIM)
        (first,) = _concurrently(client, False)  # times out at the victim: its catalog is now stale
        lenient, strict = _concurrently(client, False, True)
        fed.thaw(VICTIM)
        for call in (first, lenient, strict):
            _assert_in_time(call)
            assert call.seconds >= DEADLINE - 0.5  # it did wait for the victim, up to the deadline
        for call in (first, lenient):
            assert call.release is not None, call.error
            assert call.release.missing == {VICTIM: "deadline exceeded"}
            _assert_correct(call.release, fed.truth)
        assert isinstance(strict.error, PartialFailure) and set(strict.error.missing) == {VICTIM}
        resumed = time.monotonic()
        while not _full(call := _ask(client)):
            assert time.monotonic() - resumed < RECOVERY_SECONDS, call
        assert call.release is not None
        _assert_correct(call.release, fed.truth)


def test_node_killed_during_a_burst_and_restarted(fed: Cluster) -> None:
    """Property: with 16 analyst threads querying back to back, SIGKILLing a node and restarting it
    on the same port and data never makes a call hang or fail uncleanly: every call completes
    within the deadline (+ margin) with a full answer, a partial answer naming only the killed node
    (or nodes refusing as busy) and correct for the nodes that contributed, or a typed busy
    refusal; calls in flight at the kill come back partial; and after the restart answers include
    the node again within seconds, without restarting the coordinator."""
    with Hammer(fed, threads=16) as hammer:
        hammer.wait_for(_full, 10)
        time.sleep(0.5)
        killed_at = time.monotonic()
        fed.kill(VICTIM)
        hammer.wait_for(lambda c: c.started > killed_at and c.release is not None, 10)
        time.sleep(0.5)
        restarted_at = time.monotonic()
        readiness = fed.start(VICTIM)
        ready_at = restarted_at + readiness
        back = hammer.wait_for(lambda c: c.started > ready_at and _full(c), RECOVERY_SECONDS + 5)
        time.sleep(0.5)
    calls = hammer.calls
    print(
        f"{len(calls)} calls; readiness {readiness:.2f} s; back in answers "
        f"{back.ended - ready_at:.2f} s after the restarted node listened"
    )
    assert back.ended - ready_at <= RECOVERY_SECONDS
    assert readiness < 20
    for call in calls:
        _assert_in_time(call)
        if call.error is not None:
            assert isinstance(call.error, ResourceLimit), repr(call.error)  # a busy coordinator only
            continue
        release = call.release
        assert release is not None
        for node, reason in release.missing.items():
            assert node == VICTIM or "already answering" in reason, (node, reason)
        if VICTIM in release.missing and "already answering" not in release.missing[VICTIM]:
            # The node was missing for being down: only while it was, never before the kill.
            assert call.ended > killed_at
        _assert_correct(release, fed.truth)
    straddling = [c for c in calls if c.started < killed_at < c.ended and c.release is not None]
    assert any(VICTIM in c.release.missing for c in straddling if c.release is not None), (
        "no query was in flight at the kill"
    )
    assert any(_full(c) for c in calls if c.started > ready_at)


def test_coordinator_killed_mid_query_gives_the_analyst_a_clean_unavailable(fed: Cluster) -> None:
    """Property: when the coordinator is SIGKILLed while an analyst's query is in flight, the
    analyst client raises Unavailable promptly (after its retries, which find nothing listening),
    never hangs; a coordinator restarted on the same port serves the next query fully."""
    fed.freeze(VICTIM)  # keeps the query in flight at the coordinator
    with fed.client() as client:
        result: list[Call] = []
        thread = threading.Thread(target=lambda: result.append(_ask(client)), daemon=True)
        thread.start()
        time.sleep(0.5)
        assert not result
        killed_at = time.monotonic()
        fed.kill("coordinator")
        thread.join(CALL_TIMEOUT + 5)
        assert not thread.is_alive(), "the analyst client hung after the coordinator died"
    fed.thaw(VICTIM)
    (call,) = result
    assert isinstance(call.error, Unavailable), repr(call.error)
    assert isinstance(call.error, AccordError) and "coordinator" in call.error.message
    assert call.ended - killed_at < DEADLINE, f"{call.ended - killed_at:.2f} s after the kill"
    fed.start("coordinator")
    with fed.client() as client:
        call = _ask(client)
    assert call.release is not None and call.release.contributing_nodes == NODES, call.error
    _assert_correct(call.release, fed.truth)


def test_coordinator_retries_a_lost_node_about_every_second(pki: TestPki) -> None:
    """Property: the coordinator's channel to a node that is gone keeps trying to reconnect at
    least about once a second (its reconnect backoff is capped at RECONNECT_BACKOFF_MS), however
    long the node stays away, so a restarted node rejoins answers within about a second. gRPC's
    default backoff grows by 1.6x per failure up to two minutes: after 20 s down, a restarted node
    stayed out of answers for another ~18 s. Here a listener that drops every connection stands in
    for the lost node and counts the coordinator's attempts over 6 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    attempts: list[float] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            attempts.append(time.monotonic())
            conn.close()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    client = NodeClient(NodeEndpoint("county", address), pki.coordinator)
    try:
        began = time.monotonic()
        while time.monotonic() - began < 6:
            assert client.catalog() is None  # fails at once: the "node" drops the connection
            time.sleep(0.1)
    finally:
        client.close()
        stop.set()
        acceptor.join(5)
        listener.close()
    late = [t for t in attempts if t - began > 2]  # once the backoff has had time to grow
    gaps = [b - a for a, b in itertools.pairwise(late)]
    # about a second: 1 s + gRPC's 20% jitter + a busy machine's delay
    assert len(late) >= 3 and max(gaps) <= 1.7, [round(t - began, 2) for t in attempts]
    assert RECONNECT_BACKOFF_MS[1] <= 1000
