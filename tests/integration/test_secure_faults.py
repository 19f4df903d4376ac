"""Secure aggregation when a participant dies: real ``accord node serve`` processes, one SIGKILLed
between the two rounds of a query, then restarted on the same port from the same files."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import grpc
import pytest

from accord.coordinator.client import AccordClient
from accord.coordinator.config import load_coordinator_config
from accord.coordinator.secure import node_verifier
from accord.coordinator.secure_combine import combine_shares
from accord.coordinator.server import start_coordinator
from accord.demo.processes import Process, accord_command, free_ports, spawn
from accord.errors import IntegrityError, PartialFailure, PermissionDenied
from accord.node.state import StateReader
from accord.policies.identity import Identity
from accord.policies.secagg import KeyShare, SignedShare
from accord.protos import convert, convert_secure
from accord.protos.rpcstatus import error_from_rpc
from accord.protos.v1 import node_pb2, node_pb2_grpc
from accord.rpc.transport import secure_channel
from tests.conftest import TestPki
from tests.integration.federation import LISTEN, coordinator_config, link_certs, write_coordinator
from tests.integration.secure_federation import NODES, recorded_share, secure_node_configs
from tests.signing import sign

START = 60.0
RECOVERY = 20.0
SQL = "SELECT COUNT(*) AS n FROM census"


def _stub(port: int, node: str, pki: TestPki) -> node_pb2_grpc.NodeServiceStub:
    channel = secure_channel(f"127.0.0.1:{port}", pki.coordinator, Identity("node", node))
    return node_pb2_grpc.NodeServiceStub(channel)


@pytest.mark.timeout(240)
def test_a_participant_killed_between_the_rounds_fails_the_query_cleanly_and_a_retry_succeeds(
    pki: TestPki, tmp_path: Path
) -> None:
    """Property: SIGKILL one participant after every node joined: the others' masked shares cannot
    be combined (an error naming the missing node, never an answer), the real coordinator fails the
    query naming it, the restarted node has forgotten its key (its old keys are refused), and a
    retry with the same id through the coordinator answers from the shares recorded the first time,
    charging each node once."""
    link_certs(tmp_path, pki)
    ports = dict(zip(NODES, free_ports(len(NODES)), strict=True))
    configs = secure_node_configs(tmp_path, listen_for=ports)
    processes: dict[str, Process] = {}
    coordinator = None
    try:
        for name in NODES:
            processes[name] = spawn(
                name, accord_command("node", "serve", "--config", str(configs[name])), tmp_path
            )
        for name, proc in processes.items():
            assert proc.wait_for_port(START) == ports[name]
        stubs = {n: _stub(ports[n], n, pki) for n in NODES}
        query_id = str(uuid.uuid4())
        signed = sign(pki.analyst("alice"), SQL, "1", query_id)
        query = convert.signed_query_to_pb(signed)
        keys: list[KeyShare] = [
            convert_secure.key_share_from_pb(
                stubs[n].JoinSecureAggregation(
                    node_pb2.SecureJoinRequest(query=query, participants=NODES), timeout=20
                )
            )
            for n in NODES
        ]
        processes["district-b"].stop(signal.SIGKILL)
        request = node_pb2.SecureAnswerRequest(
            query=query, keys=[convert_secure.key_share_to_pb(k) for k in keys]
        )
        shares: list[SignedShare] = [
            convert_secure.secure_share_from_pb(stubs[n].AnswerSecure(request, timeout=20))
            for n in ("county", "district-a")
        ]
        with pytest.raises(IntegrityError, match="missing: district-b"):
            combine_shares(shares, node_verifier(pki.coordinator), query_id, NODES)

        path = write_coordinator(
            tmp_path, coordinator_config(tmp_path, {n: f"127.0.0.1:{p}" for n, p in ports.items()})
        )
        coordinator, service = start_coordinator(load_coordinator_config(path), listen=LISTEN)
        client = AccordClient(
            f"127.0.0.1:{coordinator.port}", pki.analyst("alice"), retries=0, agreement="open"
        )
        with pytest.raises(PartialFailure, match="district-b"):
            client.query_release(SQL, "1", query_id=query_id)

        processes["district-b"] = spawn(
            "district-b", accord_command("node", "serve", "--config", str(configs["district-b"])), tmp_path
        )
        assert processes["district-b"].wait_for_port(START) == ports["district-b"]
        restarted = _stub(ports["district-b"], "district-b", pki)
        with pytest.raises(grpc.RpcError) as caught:  # its key died with it
            restarted.AnswerSecure(request, timeout=20)
        failure = error_from_rpc(caught.value)
        assert isinstance(failure, PermissionDenied) and failure.reason == "SECURE_SESSION_UNKNOWN"

        deadline = time.monotonic() + RECOVERY
        while True:
            try:
                release = client.query_release(SQL, "1", query_id=query_id)
                break
            except PartialFailure:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert release.aggregation == "secure" and release.contributing_nodes == NODES
        total = sum(recorded_share(tmp_path, n, "alice", query_id).vector[0] for n in NODES)
        assert release.rows[0].cells[0].estimate.value == total
        for name in NODES:
            with StateReader(tmp_path / "state" / f"{name}.sqlite3", name) as reader:
                assert reader.spent("open", "alice").analyst.value == 1
        client.close()
        service.close()
    finally:
        if coordinator is not None:
            coordinator.stop(grace=0)
        for proc in processes.values():
            proc.stop()
