"""Regression tests for what attacking the hardening itself found (each was a live hole first).

Real servers over mTLS, real certificates, a real TCP front end standing in for a rogue node
operator. Each test names the attack in its docstring; the fix is described in the README.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import start_coordinator
from accord.errors import ConfigError, ResourceLimit, Unavailable
from accord.node.config import load_node_config
from accord.node.server import start_node
from accord.policies.pki import CA_CERT, CA_KEY
from accord.policies.pki_crl import revoke
from accord.policies.revocation import CRL_FILE
from accord.protos.rpcstatus import error_from_rpc
from accord.rpc.fairness import FairnessConfig
from accord.rpc.serving import RunningServer
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
from tests.signing import answer_request, sign

LISTEN = "127.0.0.1:0"
SQL = "SELECT COUNT(*) AS n FROM pums"
TIMEOUT = 10.0


class Front:
    """A TCP front end forwarding to ``target`` while ``admitting`` is set; new connections are
    closed at once when it is not (open ones keep flowing): a rogue operator refusing the
    coordinator's certificate check while its gRPC connection stays open."""

    def __init__(self, target: int) -> None:
        self.admitting = threading.Event()
        self.admitting.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(target,), daemon=True).start()

    def _accept(self, target: int) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.admitting.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


def _ca_copy(pki: TestPki, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in (CA_CERT, CA_KEY, CRL_FILE):
        shutil.copy(pki.root / name, folder / name)
    return folder


def _node(root: Path, pki: TestPki, **settings: object) -> RunningServer:
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    config = node_config(root, "county", [pums_dataset(root, "pums", PUMS_PID)], **settings)
    return start_node(load_node_config(write_node(root, config)), listen=LISTEN)


def _coordinator(root: Path, node_port: int, **settings: object) -> tuple[RunningServer, object]:
    config = coordinator_config(root, {"county": f"127.0.0.1:{node_port}"}, analysts=("alice", "bob"))
    config = dataclasses.replace(config, **settings)  # type: ignore[arg-type]
    return start_coordinator(load_coordinator_config(write_coordinator(root, config)), listen=LISTEN)


def _until(check: Callable[[], bool], wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_node_refuses_a_query_signed_by_a_revoked_analyst(pki: TestPki, tmp_path: Path) -> None:
    """Attack: the node checked the CRL against its TLS peer (the coordinator) only, so a query
    *signed* by a revoked analyst, relayed by a coordinator (compromised, or replaying within the
    freshness window), was answered and charged in her name. Now the node checks the signer's
    certificate against the CRL too: UNAUTHENTICATED, SIGNER_REVOKED, nothing charged."""
    ca_dir = _ca_copy(pki, tmp_path / "ca")
    node = _node(tmp_path, pki, tls_crl=ca_dir / CRL_FILE)
    fed = Federation(tmp_path, pki, {"county": node}, *_coordinator(tmp_path, node.port))  # type: ignore[arg-type]
    try:
        channel, stub = fed.node_stub("county")
        with channel:
            stub.Answer(answer_request(sign(pki.analyst("alice"), SQL)), timeout=TIMEOUT)  # control: answered
            revoke(ca_dir, pki.analyst("alice").cert)

            def refused() -> bool:
                try:
                    stub.Answer(answer_request(sign(pki.analyst("alice"), SQL)), timeout=TIMEOUT)
                except grpc.RpcError as err:
                    error = error_from_rpc(err, peer="node county")
                    return getattr(error, "reason", "") == "SIGNER_REVOKED"
                return False

            assert _until(refused)
    finally:
        fed.stop()


def test_a_health_watch_ends_when_its_caller_is_revoked_and_pins_no_worker(
    pki: TestPki, tmp_path: Path
) -> None:
    """Attacks: (1) the caller gate checked a stream once, at its start, so a health Watch opened
    before a revocation kept receiving statuses; (2) wrapping Watch dropped its non-blocking
    mode, so each open Watch held a worker thread and a handful of them (from any certificate of
    the served role) left no thread for queries. Now 40 open Watch streams leave queries answered,
    and after the coordinator's certificate is revoked its Watch ends at the next status."""
    ca_dir = _ca_copy(pki, tmp_path / "ca")
    node = _node(tmp_path, pki, tls_crl=ca_dir / CRL_FILE, max_workers=2, max_concurrent_rpcs=4)
    fed = Federation(tmp_path, pki, {"county": node}, *_coordinator(tmp_path, node.port))  # type: ignore[arg-type]
    channels: list[grpc.Channel] = []
    try:
        watches = []
        for _ in range(40):
            channel, _ = fed.node_stub("county")
            channels.append(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            watches.append(watch)
        with fed.client(retries=0) as alice:
            assert alice.query_release(SQL, "1").rows  # the Watches hold no worker
        received: list[int] = []
        reader = threading.Thread(
            target=lambda: received.extend(m.status for m in _quietly(watches[0])), daemon=True
        )
        reader.start()
        revoke(ca_dir, pki.coordinator.cert)
        time.sleep(2.0)  # the node reloads the CRL within a second
        node.set_serving(False)  # a status change: the revoked caller's stream must end here
        reader.join(timeout=10)
        assert not reader.is_alive() and received == []
    finally:
        for channel in channels:
            channel.close()
        fed.stop()


def _quietly(stream: Iterator[health_pb2.HealthCheckResponse]) -> Iterator[health_pb2.HealthCheckResponse]:
    with contextlib.suppress(grpc.RpcError):
        yield from stream


def test_a_concurrent_retry_leaves_at_its_own_budget(pki: TestPki, tmp_path: Path) -> None:
    """Attack: a retry with the same query id, sent while the first request's engine ran, waited
    for the first to finish and was answered at once from the stored release, unpadded, so its
    reply left when the first's data-dependent work ended. Now every request that passes the
    policy checks is padded from its own arrival: both replies leave no earlier than their
    budget after they were sent."""
    budget = 0.6
    node = _node(tmp_path, pki, answer_seconds=budget)
    fed = Federation(tmp_path, pki, {"county": node}, *_coordinator(tmp_path, node.port))  # type: ignore[arg-type]
    try:
        envelope = sign(pki.analyst("alice"), SQL)
        channel, stub = fed.node_stub("county")
        took: list[float] = []

        def ask() -> None:
            sent = time.monotonic()
            stub.Answer(answer_request(envelope), timeout=TIMEOUT)
            took.append(time.monotonic() - sent)

        with channel:
            first = threading.Thread(target=ask)
            first.start()
            time.sleep(0.05)
            ask()  # the retry, while the first is being answered
            first.join()
        assert len(took) == 2 and min(took) >= budget
    finally:
        fed.stop()


def test_a_node_that_cannot_be_checked_against_the_crl_is_not_used(pki: TestPki, tmp_path: Path) -> None:
    """Attack: when the coordinator's own TLS look at a node's certificate failed, it used the
    node anyway ("the call will say so"), over its open gRPC connection: a node whose certificate
    was revoked only had to refuse new connections. Now a node that cannot be looked at after the
    CRL changed is not used until it can be."""
    ca_dir = _ca_copy(pki, tmp_path / "ca")
    node = _node(tmp_path, pki)
    front = Front(node.port)
    crl = ca_dir / CRL_FILE
    running, service = _coordinator(
        tmp_path, front.port, tls=dataclasses.replace(coordinator_config(tmp_path, {}).tls, crl=crl)
    )
    fed = Federation(tmp_path, pki, {"county": node}, running, service)  # type: ignore[arg-type]
    try:
        with fed.client(retries=0) as alice:
            assert alice.query_release(SQL, "1").rows  # looked at, not revoked, connection open
            front.admitting.clear()  # from now on only the open connection flows
            revoke(ca_dir, pki.node("county").cert)

            def refused() -> bool:
                try:
                    alice.query_release(SQL, "1", query_id=str(uuid.uuid4()))
                except Unavailable:
                    return True
                return False

            assert _until(refused)
        assert "could not be checked against the revocation list" in fed.service.clients["county"].last_error
    finally:
        front.close()
        fed.stop()


def test_a_server_certificate_naming_another_party_is_refused_at_start(pki: TestPki, tmp_path: Path) -> None:
    """Attack: a node certificate from an organisation's CA that also carried
    ``coordinator.coordinator.accord`` started without complaint (only wildcards were refused)
    and could pass for the coordinator. Now a server refuses to start with any `.accord` name
    but its own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from accord.policies.pki import issue

    leaf = issue(pki.root, tmp_path / "extra", "node", "county")
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    names = [
        x509.UniformResourceIdentifier("accord://node/county"),
        x509.DNSName("county.node.accord"),
        x509.DNSName("Coordinator.Coordinator.Accord"),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    leaf.cert.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="also carries the name"):
        _node(tmp_path, pki, tls_cert=leaf.cert, tls_key=leaf.key)


@pytest.mark.parametrize("flood", ["budget", "catalog"])
def test_flooding_budget_or_catalog_calls_does_not_starve_another_analyst(
    pki: TestPki, tmp_path: Path, flood: str
) -> None:
    """Attack: the per-analyst limits covered queries and previews only; one analyst flooding
    GetBudget (a fan-out to every node) or the agreement catalog filled the coordinator's call
    slots and Bob's queries were refused. Now every analyst call counts against its share."""
    fair = FairnessConfig(max_in_flight=2, per_minute=600, burst=10)
    node = _node(tmp_path, pki, fairness=UNLIMITED, max_workers=8)
    running, service = _coordinator(tmp_path, node.port, max_in_flight=4, max_workers=8, fairness=fair)
    fed = Federation(tmp_path, pki, {"county": node}, running, service)  # type: ignore[arg-type]
    stop = threading.Event()

    def hammer() -> None:
        with fed.client(retries=0) as alice:
            while not stop.is_set():
                with contextlib.suppress(ResourceLimit):
                    if flood == "budget":
                        alice.budget("open")
                    else:
                        alice.catalog(agreement="open")

    threads = [threading.Thread(target=hammer) for _ in range(24)]
    for t in threads:
        t.start()
    refused = 0
    try:
        time.sleep(0.5)
        with fed.client(tls=pki.analyst("bob"), retries=0) as bob:
            for _ in range(8):
                try:
                    assert bob.query_release(SQL, "0.01", timeout=TIMEOUT).rows
                except ResourceLimit:
                    refused += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        fed.stop()
    assert refused == 0
