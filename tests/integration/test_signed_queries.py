"""Signed queries against real processes: nodes started with ``accord node serve``, a coordinator that
tampers with what it forwards (``tests.integration.tamper_coordinator``, a real process), raw calls
made with a coordinator's certificate (anyone holding one), and a node killed with SIGKILL.

What must hold (issue "foundation for governance"): a node answers only queries the named analyst
really signed; a coordinator that alters, invents or replays a query is refused by every node with
a reason the analyst can act on; a replay inside the freshness window is a retry (the recorded
release, nothing new); bad analyst certificates are refused at the node even when the coordinator
lets them through; a retry after SIGKILL and restart gets the same bytes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from accord.coordinator.client import AccordClient
from accord.demo.processes import Process, accord_command, free_ports, spawn
from accord.errors import PermissionDenied, Unauthenticated, Unavailable
from accord.node.state import SqliteState
from accord.policies.identity import Identity
from accord.policies.pki import init_federation, issue
from accord.policies.signing import QueryPayload, SignedQuery, sign_query
from accord.rpc.transport import TlsFiles, secure_channel
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    coordinator_config,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    write_coordinator,
    write_node,
)
from tests.integration.processes import survivors
from tests.rooms import ROOT
from tests.signing import answer_request, sign

NODES = ("county", "district-a")
MAX_AGE = 3  # seconds: short, so a stale replay can be shown without a long wait
SKEW = 1
START = 60.0
SQL = "SELECT COUNT(*) AS n FROM pums"


@dataclass
class Cluster:
    root: Path
    pki: TestPki
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)

    def start_node(self, name: str) -> None:
        command = accord_command("node", "serve", "--config", str(self.root / f"{name}.toml"))
        proc = spawn(name, command, self.root)
        self.processes[name] = proc
        self.ports[name] = proc.wait_for_port(START)

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.processes[name].stop(sig)

    def stop_all(self) -> None:
        for proc in self.processes.values():
            proc.stop()

    def answer(self, node: str, signed: SignedQuery, tls: TlsFiles | None = None) -> bytes:
        """Ask ``node`` directly with a coordinator's certificate: the reply's raw bytes."""
        channel = secure_channel(
            f"127.0.0.1:{self.ports[node]}", tls or self.pki.coordinator, Identity("node", node)
        )
        with channel:
            call = channel.unary_unary(
                "/accord.v1.NodeService/Answer",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=lambda b: b,
            )
            reply: bytes = call(answer_request(signed), timeout=20)
            return reply

    def refusal(self, node: str, signed: SignedQuery) -> tuple[grpc.StatusCode, str, str]:
        """The status code, ErrorInfo reason and message of ``node`` refusing ``signed``."""
        with pytest.raises(grpc.RpcError) as info:
            self.answer(node, signed)
        err = info.value
        status = rpc_status.from_call(err)
        reasons = []
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                ei = error_details_pb2.ErrorInfo()
                detail.Unpack(ei)
                reasons.append(ei.reason)
        return err.code(), reasons[0] if reasons else "", err.details()

    def recorded(self) -> dict[str, set[str]]:
        """Every node's recorded query ids (the nodes must be stopped: the files are locked)."""
        out = {}
        for node in NODES:
            with SqliteState(self.root / "state" / f"{node}.sqlite3", node) as state:
                rows = state._con.execute("SELECT query_id FROM answers").fetchall()
                out[node] = {r[0] for r in rows}
        return out


@pytest.fixture(scope="module")
def cluster(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("signed")
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    for name, port in zip(NODES, free_ports(len(NODES)), strict=True):
        config = node_config(root, name, [pums_dataset(root, "pums", PUMS_PID)], listen=f"127.0.0.1:{port}")
        write_node(root, dataclasses.replace(config, query_max_age_seconds=MAX_AGE, clock_skew_seconds=SKEW))
    c = Cluster(root, pki)
    try:
        for name in NODES:
            c.start_node(name)
        yield c
    finally:
        c.stop_all()
        leftovers = survivors(str(root))
        for proc in leftovers:
            proc.kill()
        assert leftovers == []


# ---- a coordinator that tampers --------------------------------------------------------------


@dataclass
class Tamperer:
    address: str
    control: Path
    process: Process

    def mode(self, mode: str) -> None:
        self.control.write_text(mode, encoding="utf-8")


@pytest.fixture(scope="module")
def tamperer(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tamperer]:
    root = cluster.root
    addresses = {n: f"127.0.0.1:{cluster.ports[n]}" for n in NODES}
    config = write_coordinator(root, coordinator_config(root, addresses, analysts=("alice", "bob")))
    bob = issue(cluster.pki.root, tmp_path_factory.mktemp("bob"), "analyst", "bob")
    control = root / "tamper-mode.txt"
    control.write_text("pass", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "tests.integration.tamper_coordinator",
        "--config",
        str(config),
        "--control",
        str(control),
        "--bob",
        str(bob.cert),
    ]
    env_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PYTHONPATH"] = env_path  # spawn() passes the environment on
    proc = spawn("tamper-coordinator", command, ROOT)
    try:
        port = proc.wait_for_port(START)
        yield Tamperer(f"127.0.0.1:{port}", control, proc)
    finally:
        proc.stop()


TAMPERINGS = [
    # (mode, error the analyst gets, reason code every node gives)
    ("alter-sql", Unauthenticated, "SIGNATURE_INVALID"),
    ("alter-epsilon", Unauthenticated, "SIGNATURE_INVALID"),
    ("alter-analyst", Unauthenticated, "SIGNATURE_INVALID"),
    ("alter-time", Unauthenticated, "SIGNATURE_INVALID"),
    ("swap-certificate", Unauthenticated, "SIGNATURE_INVALID"),
    ("invent", PermissionDenied, "SIGNER_NOT_AN_ANALYST"),
    ("invent-own-ca", Unauthenticated, "SIGNER_NOT_TRUSTED"),
]


def test_a_tampering_coordinator_is_refused_by_every_node(cluster: Cluster, tamperer: Tamperer) -> None:
    """Property: whatever a coordinator changes in a signed query (SQL, epsilon, analyst, time, the
    certificate) or invents (signed with its own key, or with an analyst of its own CA), every
    node refuses it; the analyst gets the nodes' common refusal with its reason code and a message
    to act on; and no node records an answer to any of it. Honest forwarding (control) works."""
    asked: dict[str, str] = {}
    with AccordClient(tamperer.address, cluster.pki.analyst("alice"), agreement="open") as client:
        tamperer.mode("pass")
        control = client.query_release(SQL, "1", query_id="honest-1")
        assert control.contributing_nodes == NODES
        for mode, error, reason in TAMPERINGS:
            tamperer.mode(mode)
            query_id = f"tampered-{mode}"
            with pytest.raises(error) as info:
                client.query_release(SQL, "1", query_id=query_id)
            assert type(info.value) is error, (mode, info.value)
            assert info.value.reason == reason, (mode, info.value.message)
            asked[mode] = info.value.message
        tamperer.mode("pass")
    assert "changed after analyst 'alice' signed it" in asked["alter-sql"]
    assert "signed with a coordinator certificate" in asked["invent"]
    assert "does not trust" in asked["invent-own-ca"]
    # every node refused on its own: raw calls get the same reason from each (not the coordinator's word)
    genuine = sign(cluster.pki.analyst("alice"), SQL)
    altered = dataclasses.replace(
        genuine,
        payload=dataclasses.replace(
            QueryPayload.decode(genuine.payload), sql="SELECT SUM(age) FROM pums"
        ).encode(),
    )
    for node in NODES:
        code, reason, _ = cluster.refusal(node, altered)
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_INVALID")


def test_replays_inside_the_window_are_retries_and_older_ones_are_refused(
    cluster: Cluster, tamperer: Tamperer
) -> None:
    """Property: a coordinator replaying an envelope it saw earlier gets, inside the freshness
    window, exactly the recorded release (a retry: no fresh noise, nothing recorded anew); once the
    envelope is older than max_age + clock skew every node refuses it as not fresh."""
    alice = cluster.pki.analyst("alice")
    envelope = sign(alice, "SELECT SUM(age) AS years FROM pums", "0.5", "replayed")
    first = {n: cluster.answer(n, envelope) for n in NODES}
    assert {n: cluster.answer(n, envelope) for n in NODES} == first  # inside the window: the same bytes
    time.sleep(MAX_AGE + SKEW + 1.5)
    for node in NODES:
        code, reason, message = cluster.refusal(node, envelope)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "QUERY_NOT_FRESH")
        assert "send it again" in message
    # through the tampering coordinator: it forwards the first envelope it ever saw (long stale)
    tamperer.mode("replay-first")
    try:
        with (
            AccordClient(tamperer.address, alice, agreement="open") as client,
            pytest.raises(PermissionDenied) as info,
        ):
            client.query_release(SQL, "1", query_id="fresh-but-replaced")
    finally:
        tamperer.mode("pass")
    assert info.value.reason == "QUERY_NOT_FRESH"


def test_bad_analyst_certificates_are_refused_at_the_node(cluster: Cluster, tmp_path: Path) -> None:
    """Property: envelopes signed with an expired, a not-yet-valid, another CA's or a node's
    certificate are refused by the node itself, sent by a coordinator that let them through."""
    pki, now = cluster.pki, datetime.now(UTC)
    day = timedelta(days=1)
    certs = {
        "expired": issue(
            pki.root, tmp_path / "a", "analyst", "alice", not_before=now - 9 * day, not_after=now - day
        ),
        "not-yet-valid": issue(
            pki.root, tmp_path / "b", "analyst", "alice", not_before=now + day, not_after=now + 9 * day
        ),
        "node-role": issue(pki.root, tmp_path / "c", "node", "alice"),
        "other-ca": next(
            c
            for c in init_federation(tmp_path / "d", analysts=("alice",)).issued
            if c.identity.role == "analyst"
        ),
    }
    expected = {
        "expired": (grpc.StatusCode.UNAUTHENTICATED, "SIGNER_CERTIFICATE_NOT_VALID", "expired"),
        "not-yet-valid": (grpc.StatusCode.UNAUTHENTICATED, "SIGNER_CERTIFICATE_NOT_VALID", "not valid until"),
        "node-role": (grpc.StatusCode.PERMISSION_DENIED, "SIGNER_NOT_AN_ANALYST", "node certificate"),
        "other-ca": (grpc.StatusCode.UNAUTHENTICATED, "SIGNER_NOT_TRUSTED", "does not trust"),
    }
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    for name, issued in certs.items():
        key = load_pem_private_key(issued.key.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
        payload = QueryPayload(f"bad-cert-{name}", "alice", SQL, "1", datetime.now(UTC))
        envelope = sign_query(payload, key, cert)  # type: ignore[arg-type]
        for node in NODES:
            code, reason, message = cluster.refusal(node, envelope)
            want_code, want_reason, says = expected[name]
            assert (code, reason) == (want_code, want_reason), (name, node, message)
            assert says in message, message


def test_a_retry_after_sigkill_and_restart_is_byte_identical(cluster: Cluster) -> None:
    """Property: a node killed with SIGKILL right after answering, then restarted on the same
    config, answers the same query id with exactly the same bytes (recorded before it was sent),
    and does not answer it afresh."""
    envelope = sign(cluster.pki.analyst("alice"), "SELECT sex, SUM(income) AS s FROM pums GROUP BY sex", "1")
    before = cluster.answer("county", envelope)
    cluster.kill("county", signal.SIGKILL)
    assert cluster.processes["county"].popen.returncode == -signal.SIGKILL
    cluster.start_node("county")
    after = cluster.answer("county", envelope)
    assert after == before
    again = cluster.answer(
        "county",
        sign(cluster.pki.analyst("alice"), "SELECT sex, SUM(income) AS s FROM pums GROUP BY sex", "1"),
    )
    assert again != before  # a new query id: fresh noise (the control)


def test_nothing_tampered_was_recorded(cluster: Cluster, tamperer: Tamperer) -> None:
    """Property: after every scenario above, the nodes' state holds the honest queries only."""
    tamperer.process.stop()
    cluster.stop_all()
    for node, ids in cluster.recorded().items():
        assert not {i for i in ids if i.startswith(("tampered-", "invented-", "bad-cert-", "fresh-but"))}, (
            node
        )
        assert "honest-1" in ids and "replayed" in ids
    with (
        pytest.raises(Unavailable),  # the coordinator is down too: nothing answers any more
        AccordClient(tamperer.address, cluster.pki.analyst("alice"), retries=0, agreement="open") as client,
    ):
        client.query_release(SQL, "1", timeout=2)
