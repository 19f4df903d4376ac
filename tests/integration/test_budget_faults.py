"""Budgets under fire: several client processes, each with several threads, spend two analysts'
budgets at one node (a real ``accord node serve`` process with its SQLite state) while the node is
SIGKILLed and restarted twice. Whatever happens, no budget is overspent, no answer is charged
twice, every release a client received is the one the node recorded, and a retried id returns the
very same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accord.demo.processes import Process, accord_command, free_ports, spawn
from accord.node.config import load_node_config
from accord.node.state import StateReader
from accord.query.epsilon import Epsilon
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    write_node,
    write_open_agreement,
)
from tests.rooms import ROOT

PER_ANALYST, TOTAL = "6", "10"  # each query spends 1/2: 12 answers for one analyst, 20 for both
PROCESSES, THREADS, PER_PROCESS = 3, 4, 16
START = 60.0


def _count(reader_path: Path) -> int:
    try:
        with StateReader(reader_path, "county") as reader:
            return sum(line.answered for line in reader.ledger())
    except Exception:
        return 0


def _wait_for(path: Path, answered: int, clients: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _count(path) < answered and time.monotonic() < deadline:
        if all(c.poll() is not None for c in clients):
            return
        time.sleep(0.02)


@pytest.mark.timeout(300)
def test_concurrent_spenders_and_killed_nodes_never_overspend_or_double_charge(
    pki: TestPki, tmp_path: Path
) -> None:
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    (port,) = free_ports(1)
    config = node_config(
        tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)], listen=f"127.0.0.1:{port}"
    )
    path = write_node(tmp_path, config, agreement=False)
    write_open_agreement(config, per_analyst=PER_ANALYST, total=TOTAL, per_query="1")
    state_file = load_node_config(path).state.path
    assert state_file is not None

    node: list[Process] = []

    def start() -> None:
        proc = spawn("county", accord_command("node", "serve", "--config", str(path)), tmp_path)
        node.append(proc)
        assert proc.wait_for_port(START) == port

    start()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    )
    clients = []
    outputs = []
    for i in range(PROCESSES):
        analyst = "alice" if i % 2 == 0 else "bob"
        out = tmp_path / f"client-{i}.jsonl"
        outputs.append(out)
        command = [
            sys.executable, "-m", "tests.integration.budget_client", "--address", f"127.0.0.1:{port}",
            "--node", "county", "--certs", str(pki.root), "--analyst", analyst, "--prefix", f"p{i}",
            "--count", str(PER_PROCESS), "--threads", str(THREADS), "--out", str(out),
        ]  # fmt: skip
        clients.append(subprocess.Popen(command, cwd=ROOT, env=env))
    try:
        for threshold in (4, 11):  # kill the node twice, mid-stream, and bring it back each time
            _wait_for(state_file, threshold, clients)
            assert any(c.poll() is None for c in clients), "the clients finished before the kill"
            node[-1].stop(signal.SIGKILL)
            start()
        for c in clients:
            assert c.wait(240) == 0
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        node[-1].stop()

    outcomes = [json.loads(line) for out in outputs for line in out.read_text().splitlines() if line]
    assert len(outcomes) == PROCESSES * PER_PROCESS
    assert {o["reason"] for o in outcomes if not o["ok"]} <= {"BUDGET_EXHAUSTED"}
    with StateReader(state_file, "county") as reader:
        spent = {who: reader.spent("open", who) for who in ("alice", "bob")}
        recorded = {}
        for o in outcomes:
            who = "alice" if o["id"][1] in "02468" else "bob"
            found = reader.find(who, o["id"])
            if found is not None:
                recorded[o["id"]] = found
    half = Epsilon.parse("1/2")
    for who, s in spent.items():
        assert s.analyst <= Epsilon.parse(PER_ANALYST), (who, s)  # never overspent
        mine = [a for a in recorded.values() if a.analyst == who]
        assert s.answered == len(mine)  # charged once per recorded answer: never twice
        total = Epsilon.zero()
        for _ in mine:
            total = total + half
        assert s.analyst == total
    assert spent["alice"].total <= Epsilon.parse(TOTAL)
    assert len(recorded) == spent["alice"].answered + spent["bob"].answered
    assert len(recorded) >= 12  # the budgets were really spent, not refused wholesale
    for o in outcomes:
        if o["ok"]:  # what a client got is exactly what the node recorded (and a retry the same)
            assert o["sha256"] == hashlib.sha256(recorded[o["id"]].release).hexdigest()
            assert o.get("again", o["sha256"]) == o["sha256"]
        else:  # a refused query left no answer behind
            assert o["id"] not in recorded
