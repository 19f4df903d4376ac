"""Roles both ways: clients check the server's role as well as its name, servers check the
caller's role on every call, and certificate mistakes are caught before serving.

The impostors are what an outsider with a valid federation certificate would run: a plain gRPC
server (not Accord's, which would refuse to start) presenting an *analyst* certificate named
``county`` to the coordinator, or a *node* certificate named ``coordinator`` to an analyst. Each
records every call that reaches it: a refused impostor must receive none (the TLS handshake fails
before any request, so the analyst's SQL never reaches it and its made-up count never reaches an
answer).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from accord.coordinator.client import AccordClient
from accord.errors import Unavailable
from accord.policies.identity import Identity
from accord.policies.pki import init_federation, issue, leaf_paths
from accord.protos.v1 import node_pb2, node_pb2_grpc
from accord.rpc.transport import TlsFiles, server_credentials
from tests.conftest import TestPki
from tests.integration.commands import accord
from tests.integration.federation import (
    PUMS_PID,
    coordinator_config,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    start_federation,
    write_coordinator,
    write_node,
)

TIMEOUT = 10.0


class Impostor:
    """A plain gRPC server with ``tls`` that records the method of every call reaching it and
    answers each with empty bytes."""

    def __init__(self, tls: TlsFiles) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((self,))
        self.port = self.server.add_secure_port("127.0.0.1:0", server_credentials(tls))
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        with self._lock:
            self.calls.append(details.method)
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")

    def stop(self) -> None:
        self.server.stop(grace=0)


@pytest.fixture
def impostor_of(pki: TestPki, tmp_path: Path) -> Iterator[Any]:
    started: list[Impostor] = []

    def start(role: str, name: str) -> Impostor:
        leaf = issue(pki.root, tmp_path / "impostors", role, name)
        impostor = Impostor(TlsFiles(leaf.cert, leaf.key, pki.ca_cert))
        started.append(impostor)
        return impostor

    yield start
    for impostor in started:
        impostor.stop()


def test_coordinator_refuses_an_analyst_certificate_posing_as_a_node(
    pki: TestPki, tmp_path: Path, impostor_of: Any
) -> None:
    """Property: a server holding a valid *analyst* certificate named ``county``, at the address the
    coordinator has for node county, receives no call from the coordinator, and the answer comes from
    the real node alone with county named as missing: its made-up count is never combined."""
    impostor = impostor_of("analyst", "county")
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    real = write_node(
        tmp_path, node_config(tmp_path, "district-a", [pums_dataset(tmp_path, "pums", PUMS_PID)])
    )
    fed = start_federation(tmp_path, pki, {"district-a": real}, extra_nodes={"county": impostor.address})
    try:
        with fed.client(retries=0) as client:
            release = client.query_release("SELECT COUNT(*) AS n FROM pums", "1")
        assert release.contributing_nodes == ("district-a",)
        assert "county" in release.missing
        assert impostor.calls == []
    finally:
        fed.stop()


def test_analyst_client_refuses_a_node_certificate_posing_as_the_coordinator(
    pki: TestPki, impostor_of: Any
) -> None:
    """Property: a server holding a valid *node* certificate named ``coordinator`` never receives
    the analyst's query: the client refuses it in the handshake and says what is wrong."""
    impostor = impostor_of("node", "coordinator")
    with (
        AccordClient(impostor.address, pki.analyst(), retries=0, agreement="open") as client,
        pytest.raises(Unavailable) as refused,
    ):
        client.query_release("SELECT COUNT(*) AS n FROM pums WHERE age > 40", "1")
    assert impostor.calls == []
    message = refused.value.message
    assert "is not coordinator/coordinator" in message
    assert "coordinator.coordinator.accord" in message
    assert "CERTIFICATE_VERIFY_FAILED" not in message and "Hostname Verification" not in message


def test_cli_explains_tls_failures_without_c_core_noise(
    pki: TestPki, tmp_path: Path, impostor_of: Any
) -> None:
    """Property: `accord query` against a server of the wrong role, and with a CA that did not issue
    the server's certificate, fails with one line saying what to change: no C-core log lines
    (``E1203 ... ssl_transport_security``), no raw OpenSSL text."""
    impostor = impostor_of("node", "coordinator")
    tls = pki.analyst()
    other_ca = tmp_path / "other"
    init_federation(other_ca)
    for ca, expected in ((tls.ca, "is not coordinator/coordinator"), (other_ca / "ca.pem", "did not issue")):
        # With the other CA, our own certificate is not from it either: the client says so first.
        result = accord(
            "query",
            "--coordinator",
            impostor.address,
            "--cert",
            str(tls.cert),
            "--key",
            str(tls.key),
            "--ca",
            str(ca),
            "--agreement",
            "open",
            "--epsilon",
            "1",
            "SELECT COUNT(*) FROM pums",
            cwd=tmp_path,
            home=tmp_path,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert expected in lines[0] or "was not issued by the CA" in lines[0], lines[0]
        assert "ssl_transport_security" not in result.stderr and ": OK" not in result.stderr
    assert impostor.calls == []


# ---- certificate mistakes caught before serving ---------------------------------------------


def _node_with_cert(root: Path, pki: TestPki, cert: Path, key: Path) -> Path:
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    config = node_config(root, "county", [pums_dataset(root, "pums", PUMS_PID)], tls_cert=cert, tls_key=key)
    return write_node(root, config)


def _old_style_certificate(pki: TestPki, out: Path) -> tuple[Path, Path]:
    """Node county's certificate as issued before roles were checked: DNS name ``county`` only."""
    leaf = issue(pki.root, out, "node", "county")
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.UniformResourceIdentifier(u) for u in uris), x509.DNSName("county")]
            ),
            critical=False,
        )
    )
    for ext in cert.extensions:
        if ext.oid != ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
            builder = builder.add_extension(ext.value, ext.critical)
    leaf.cert.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # type: ignore[arg-type]
    return leaf.cert, leaf.key


@pytest.mark.parametrize(
    "mistake", ["analyst certificate", "another node's certificate", "no role-qualified name"]
)
def test_node_check_refuses_a_certificate_clients_would_refuse(
    pki: TestPki, tmp_path: Path, mistake: str
) -> None:
    """Property: `accord node check` (and `accord node serve`, which runs the same checks) refuses a
    certificate of the wrong role, of another node, or without the DNS name clients verify, and
    says which certificate to issue; it no longer says OK and leaves the node DOWN."""
    if mistake == "analyst certificate":
        cert, key = leaf_paths(pki.root, "analyst", "alice")
        expected = "is for analyst/alice, but this server is node/county"
    elif mistake == "another node's certificate":
        cert, key = leaf_paths(pki.root, "node", "district-a")
        expected = "is for node/district-a, but this server is node/county"
    else:
        cert, key = _old_style_certificate(pki, tmp_path / "old")
        expected = "lacks the DNS name county.node.accord"
    config = _node_with_cert(tmp_path, pki, cert, key)
    for command in ("check", "serve"):
        result = accord("node", command, "--config", str(config), cwd=tmp_path, home=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert expected in result.stderr and "accord pki issue --role node --name county" in result.stderr
        assert "Traceback" not in result.stderr


def test_coordinator_check_refuses_a_node_certificate(pki: TestPki, tmp_path: Path) -> None:
    """Property: `accord coordinator check` refuses a node's certificate named ``coordinator`` (a
    valid certificate of the wrong role), and on the right one lists the names clients verify."""
    link_certs(tmp_path, pki)
    wrong = issue(pki.root, tmp_path / "wrong", "node", "coordinator")
    good = write_coordinator(tmp_path, coordinator_config(tmp_path, {"county": "127.0.0.1:1"}))
    ok = accord("coordinator", "check", "--config", str(good), cwd=tmp_path, home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "verified by analysts as coordinator.coordinator.accord" in ok.stdout
    assert "node county at 127.0.0.1:1: verified as county.node.accord" in ok.stdout
    config = coordinator_config(
        tmp_path, {"county": "127.0.0.1:1"}, tls=TlsFiles(wrong.cert, wrong.key, pki.ca_cert)
    )
    bad = write_coordinator(tmp_path, config)
    result = accord("coordinator", "check", "--config", str(bad), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 2
    assert "is for node/coordinator, but this server is coordinator/coordinator" in result.stderr


def test_server_names_hold_the_role() -> None:
    """Property: the name a client verifies differs between parties of the same name and different
    roles, and between parties of the same role and different names (names hold no dots)."""
    names = {
        Identity(r, n).server_name for r in ("node", "coordinator", "analyst") for n in ("county", "a-b")
    }
    assert len(names) == 6
    assert Identity("node", "county").server_name == "county.node.accord"


def _reasons(channel: grpc.Channel) -> dict[str, tuple[str, list[str]]]:
    """(status code, ErrorInfo reasons) of the node's catalog, health and reflection calls."""
    node = node_pb2_grpc.NodeServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    calls = {
        "GetCatalog": lambda: node.GetCatalog(node_pb2.GetCatalogRequest(), timeout=TIMEOUT),
        "Health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT),
        "Reflection": lambda: list(reflection.ServerReflectionInfo(iter([listing]), timeout=TIMEOUT)),
    }
    out: dict[str, tuple[str, list[str]]] = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = ("OK", [])
        except grpc.RpcError as err:
            status = rpc_status.from_call(err)
            infos = [error_details_pb2.ErrorInfo() for _ in status.details] if status else []
            for info, detail in zip(infos, status.details if status else [], strict=True):
                detail.Unpack(info)
            out[name] = (err.code().name, [i.reason for i in infos])
    return out


def test_a_node_serves_auditors_and_nodes_only_its_audit_service(pki: TestPki, tmp_path: Path) -> None:
    """Property: a node's query service serves coordinators only: an auditor's certificate and
    another node's are refused it with PERMISSION_DENIED (WRONG_ROLE) before any service code;
    they reach health and reflection (the audit service is theirs; tests/integration/test_audit.py
    holds its own role checks); the coordinator is answered everywhere (control)."""
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    config = write_node(tmp_path, node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)]))
    fed = start_federation(tmp_path, pki, {"county": config})
    auditor = issue(pki.root, tmp_path / "auditors", "auditor", "ico")
    try:
        for tls in (TlsFiles(auditor.cert, auditor.key, pki.ca_cert), pki.node("district-a")):
            channel, _ = fed.node_stub("county", tls)
            with channel:
                assert _reasons(channel) == {
                    "GetCatalog": ("PERMISSION_DENIED", ["WRONG_ROLE"]),
                    "Health": ("OK", []),
                    "Reflection": ("OK", []),
                }
        channel, _ = fed.node_stub("county")
        with channel:
            assert {code for code, _ in _reasons(channel).values()} == {"OK"}
    finally:
        fed.stop()
