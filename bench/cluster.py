"""A real federation for the federated and throughput suites, started the way an operator starts one.

:func:`federation` writes a development PKI (:func:`policies.pki.init_federation`: a CA, one
coordinator, ``nodes`` nodes and ``analysts`` analysts) and one Parquet slice per node (its own
seed, :func:`bench.data.generate`), then starts every node as its own ``python -m accord.cli node
serve --config ...`` process and waits for its "listening on port N" line (the helpers of
``accord demo``). :meth:`Cluster.coordinator` starts a coordinator process configured with a
given subset of the nodes. Everything started is stopped when the ``with`` block ends, whatever
happens (SIGTERM first, SIGKILL for anything that does not stop), and the working folder is removed.

    with federation(cfg, nodes=4, analysts=16, rows_per_node=100_000) as fed:
        with fed.coordinator(fed.node_names[:4]) as address:
            client = AccordClient(address, fed.analyst_tls(fed.analysts[0]), agreement=AGREEMENT)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pyarrow.parquet as pq

from accord.coordinator.config import write_coordinator_config
from accord.demo.layout import demo_coordinator_config
from accord.demo.processes import Process, accord_command, spawn
from accord.node.config import StateConfig
from accord.policies.pki import init_federation
from accord.rpc.transport import TlsFiles
from bench.common import ROOT, BenchConfig
from bench.data import BENCH_FAIRNESS, COORDINATOR, ROW_GROUP, SEED, generate, node_config

START_TIMEOUT = 180.0  # seconds for one server to print its port (16 nodes start at once)
STOP_TIMEOUT = 20.0
EPSILON = "1"  # per query per node; the nodes keep no budget ledger yet, so repetitions are free


def node_rows(cfg: BenchConfig) -> int:
    """Rows each node serves: a modest dataset, so the federation's own costs stay visible."""
    return 5_000 if cfg.quick else 100_000


def node_name(i: int) -> str:
    return f"node-{i + 1:02d}"


def analyst_name(i: int) -> str:
    return f"analyst-{i + 1:02d}"


def node_data(cfg: BenchConfig, rows: int, index: int) -> Path:
    """Node ``index``'s own slice of citizens (``rows`` rows, seed ``SEED + index``), written once
    into ``cfg.work`` and reused."""
    path = cfg.work / "federated" / f"citizens_{rows}_n{index + 1:02d}.parquet"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(generate(rows, False, seed=SEED + index), tmp, row_group_size=ROW_GROUP)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass
class Cluster:
    root: Path
    node_ports: dict[str, int]  # in start order
    analysts: tuple[str, ...]
    processes: list[Process] = field(default_factory=list)

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def node_names(self) -> list[str]:
        return list(self.node_ports)

    def analyst_tls(self, name: str) -> TlsFiles:
        return TlsFiles(
            self.certs / "analysts" / f"{name}.pem",
            self.certs / "analysts" / f"{name}.key",
            self.certs / "ca.pem",
        )

    def node_address(self, name: str) -> str:
        return f"127.0.0.1:{self.node_ports[name]}"

    def pid(self, name: str) -> int:
        """The process id of the node or coordinator called ``name`` (coordinators are named
        ``coordinator-<number of nodes>``)."""
        return next(p.popen.pid for p in self.processes if p.name == name)

    @contextlib.contextmanager
    def coordinator(self, nodes: Sequence[str], deadline_seconds: int = 30) -> Iterator[str]:
        """A coordinator process (named ``coordinator-<len(nodes)>``) serving ``nodes`` and every
        analyst; yields its address and stops it when the block ends."""
        wanted = dataclasses.replace(
            demo_coordinator_config(
                self.root,
                {n: self.node_ports[n] for n in nodes},
                0,
                deadline_seconds=deadline_seconds,
                analysts=self.analysts,
                report_node_timings=True,  # the overhead measurement needs the nodes' own times
                fairness=BENCH_FAIRNESS,
            ),
            report_coordinator_seconds=True,  # ... and the coordinator's (opt-in disclosures)
        )
        config = write_coordinator_config(wanted, self.root / f"coordinator-{len(nodes)}.toml")
        proc = spawn(
            f"coordinator-{len(nodes)}",
            accord_command("coordinator", "serve", "--config", str(config)),
            self.root,
        )
        self.processes.append(proc)  # registered first: the cluster's teardown always sees it
        try:
            port = proc.wait_for_port(START_TIMEOUT)
            yield f"127.0.0.1:{port}"
        finally:
            stop_all([proc])
            self.processes.remove(proc)


def stop_all(processes: Sequence[Process]) -> None:
    """SIGTERM every process still running (all at once, so their grace periods overlap), wait,
    and SIGKILL any that did not stop. Never raises."""
    for proc in processes:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM raises SystemExit in the main thread, so ``finally`` blocks
    (which stop the servers) run even when the benchmark itself is terminated."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def federation(
    cfg: BenchConfig,
    nodes: int,
    analysts: int,
    rows_per_node: int,
    node_workers: int = 8,
    state: str = "sqlite",
) -> Iterator[Cluster]:
    """``nodes`` node processes serving their own slices, ready to answer; see the module docstring.
    ``node_workers`` is each node's ``max_workers`` (queries it runs at once; more are refused);
    ``state`` their state backend (``sqlite``, as an operator runs them, or ``memory``)."""
    cfg.work.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="federation-", dir=cfg.work))
    cluster = Cluster(root, {}, tuple(analyst_name(i) for i in range(analysts)))
    names = [node_name(i) for i in range(nodes)]
    with sigterm_unwinds():
        try:
            init_federation(root / "certs", COORDINATOR, names, cluster.analysts)
            for i, name in enumerate(names):
                config = node_config(
                    node_data(cfg, rows_per_node, i),
                    out=root / f"{name}.toml",
                    name=name,
                    pki=root / "certs",
                    coordinators=(COORDINATOR,),
                    max_workers=node_workers,
                    state=StateConfig("memory")
                    if state == "memory"
                    else StateConfig("sqlite", root / "state" / f"{name}.sqlite3"),
                    analysts=cluster.analysts,
                    report_node_seconds=True,  # the overhead measurement needs the nodes' own times
                )
                proc = spawn(name, accord_command("node", "serve", "--config", str(config)), ROOT)
                cluster.processes.append(proc)
            for proc in list(cluster.processes):
                cluster.node_ports[proc.name] = proc.wait_for_port(START_TIMEOUT)
            yield cluster
        finally:
            stop_all(cluster.processes)
            shutil.rmtree(root, ignore_errors=True)
