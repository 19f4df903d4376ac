"""The audit log under a crash: a real ``accord node serve`` process, answering and refusing a burst
of queries from several threads, is SIGKILLed mid-burst. Every decision whose reply reached a
client (an answer or a refusal) is in the log the node left on disk, with its outcome, and the log
still verifies against its Merkle tree. (A call shed because the node is already answering
``max_workers`` queries is refused before the query is read: it is load, not a decision, and is
not logged.)"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

from accord.demo.processes import Process, accord_command, free_ports, spawn
from accord.node.config import load_node_config
from accord.node.state import StateReader
from accord.policies import merkle
from accord.policies.audit_entry import decode
from accord.policies.identity import Identity
from accord.protos.v1 import node_pb2_grpc
from accord.rpc.transport import secure_channel
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    write_node,
)
from tests.signing import answer_request, sign

THREADS = 6
GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
START = 60.0
GOOD = "SELECT COUNT(*) AS n FROM pums"
BAD = "SELECT SUM(nosuch) FROM pums"  # refused: no such field


@pytest.mark.timeout(240)
def test_every_reply_a_client_received_is_in_the_log_after_sigkill(pki: TestPki, tmp_path: Path) -> None:
    """Property: after SIGKILL in the middle of a burst of answers and refusals, each query id whose
    reply (release or refusal) reached a client is in the node's audit log with that outcome; the
    log's stored tree equals RFC 6962's over its entries."""
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    (port,) = free_ports(1)
    config = node_config(
        tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)], listen=f"127.0.0.1:{port}"
    )
    path = write_node(tmp_path, config)
    state_file = load_node_config(path).state.path
    assert state_file is not None
    node: Process = spawn("county", accord_command("node", "serve", "--config", str(path)), tmp_path)
    try:
        assert node.wait_for_port(START) == port
        received: list[tuple[str, str]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            with secure_channel(f"127.0.0.1:{port}", pki.coordinator, Identity("node", "county")) as channel:
                stub = node_pb2_grpc.NodeServiceStub(channel)
                i = 0
                while not stop.is_set():
                    i += 1
                    query_id = str(uuid.uuid4())
                    sql = BAD if (n + i) % 3 == 0 else GOOD
                    try:
                        stub.Answer(answer_request(sign(pki.analyst(), sql, "1/100", query_id)), timeout=10)
                        outcome = "answered"
                    except grpc.RpcError as err:
                        if err.code() in GONE:  # the kill: no reply reached us
                            return
                        if "already answering" in (err.details() or ""):
                            continue  # load shed before the query is read: no decision (see README)
                        outcome = "refused"
                    with lock:
                        received.append((query_id, outcome))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(received) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        node.stop(signal.SIGKILL)  # mid-burst
        assert node.popen.returncode == -signal.SIGKILL
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        node.stop()
    with lock:
        got = list(received)
    assert len(got) >= 60 and {o for _, o in got} == {"answered", "refused"}
    with StateReader(state_file, "county") as state:
        raw = state.log_entries(0, state.log_size())
        size = len(raw)
        assert size and state.log_root(size) == merkle.root([merkle.leaf_hash(e) for e in raw])
    logged = {
        (str(e.fields["query_id"]), str(e.fields["outcome"]))
        for e in map(decode, raw)
        if e.type == "decision"
    }
    missing = [r for r in got if r not in logged]
    assert missing == [], f"{len(missing)} replies a client received are not in the log: {missing[:3]}"
