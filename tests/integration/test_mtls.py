"""Mutual TLS on a real gRPC server: who may connect, and who the server thinks they are."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from policies.pki import init_federation, issue, leaf_paths
from protos.errors import PermissionDenied, Unauthenticated
from protos.identity import Identity
from protos.transport import (
    MAX_MESSAGE_BYTES,
    TlsFiles,
    channel_credentials,
    peer_identity,
    require_role,
    secure_channel,
    server_credentials,
)
from tests.conftest import TestPki

TIMEOUT = 10.0
WHO = "/accord.test.Echo/Who"
COORDINATOR_ONLY = "/accord.test.Echo/CoordinatorOnly"


def _who(request: bytes, context: grpc.ServicerContext) -> bytes:
    try:
        identity = peer_identity(context)
    except Unauthenticated as err:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, err.message)
    return str(identity).encode()


def _coordinator_only(request: bytes, context: grpc.ServicerContext) -> bytes:
    try:
        identity = require_role(context, "coordinator")
    except PermissionDenied as err:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, err.message)
    return str(identity).encode()


@pytest.fixture(scope="module")
def server(pki: TestPki) -> Iterator[str]:
    """A server holding node ``county``'s certificate; yields its ``127.0.0.1:port`` address."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Who": grpc.unary_unary_rpc_method_handler(_who),
        "CoordinatorOnly": grpc.unary_unary_rpc_method_handler(_coordinator_only),
    }
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("accord.test.Echo", handlers),))
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, srv)
    port = srv.add_secure_port("127.0.0.1:0", server_credentials(pki.node("county")))
    assert port > 0
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(0).wait()


def _call(channel: grpc.Channel, method: str = WHO) -> bytes:
    with channel:
        result: bytes = channel.unary_unary(method)(b"", timeout=TIMEOUT)
        return result


def _fails(channel: grpc.Channel, method: str = WHO) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, method)
    err = info.value
    assert isinstance(err, grpc.Call)
    return err


def test_valid_client_is_identified(server: str, pki: TestPki) -> None:
    assert _call(secure_channel(server, pki.analyst("alice"), "county")) == b"analyst/alice"
    assert _call(secure_channel(server, pki.coordinator, "county")) == b"coordinator/coordinator"
    assert _call(secure_channel(server, pki.node("district-a"), "county")) == b"node/district-a"


def test_health_service_over_mtls(server: str, pki: TestPki) -> None:
    with secure_channel(server, pki.coordinator, "county") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_role_is_enforced(server: str, pki: TestPki) -> None:
    assert (
        _call(secure_channel(server, pki.coordinator, "county"), COORDINATOR_ONLY)
        == b"coordinator/coordinator"
    )
    err = _fails(secure_channel(server, pki.analyst("alice"), "county"), COORDINATOR_ONLY)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs a coordinator certificate" in err.details()


def test_no_client_certificate_is_refused(server: str, pki: TestPki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
    channel = grpc.secure_channel(server, creds, options=[("grpc.ssl_target_name_override", "county")])
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_is_refused(server: str, pki: TestPki, tmp_path: Path) -> None:
    init_federation(tmp_path, analysts=["alice"])
    cert, key = leaf_paths(tmp_path, "analyst", "alice")
    # The impostor trusts our CA (so it would accept the server) but its own cert is foreign.
    channel = secure_channel(server, TlsFiles(cert, key, pki.ca_cert), "county")
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_client_that_trusts_another_ca_refuses_the_server(server: str, pki: TestPki, tmp_path: Path) -> None:
    init_federation(tmp_path)
    tls = pki.analyst("alice")
    channel = secure_channel(server, TlsFiles(tls.cert, tls.key, tmp_path / "ca.pem"), "county")
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused(server: str) -> None:
    assert _fails(grpc.insecure_channel(server)).code() == grpc.StatusCode.UNAVAILABLE


def test_expired_client_certificate_is_refused(server: str, pki: TestPki, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = issue(
        pki.root,
        tmp_path,
        "analyst",
        "alice",
        not_before=now - timedelta(days=3),
        not_after=now - timedelta(days=1),
    )
    channel = secure_channel(server, TlsFiles(old.cert, old.key, pki.ca_cert), "county")
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_not_yet_valid_client_certificate_is_refused(server: str, pki: TestPki, tmp_path: Path) -> None:
    later = issue(pki.root, tmp_path, "analyst", "alice", not_before=datetime.now(UTC) + timedelta(hours=1))
    channel = secure_channel(server, TlsFiles(later.cert, later.key, pki.ca_cert), "county")
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_server_must_have_the_expected_name(server: str, pki: TestPki) -> None:
    """The server holds county's certificate: a client expecting district-a must refuse it."""
    err = _fails(secure_channel(server, pki.coordinator, "district-a"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_message_size_is_bounded(server: str, pki: TestPki) -> None:
    with secure_channel(server, pki.coordinator, "county") as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(WHO)(b"x" * (MAX_MESSAGE_BYTES + 1), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_channel_credentials_need_readable_files(pki: TestPki, tmp_path: Path) -> None:
    from protos.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        channel_credentials(TlsFiles(tmp_path / "x.pem", pki.coordinator.key, pki.ca_cert))


class _FakeContext:
    """Just enough of grpc.ServicerContext for peer_identity."""

    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def test_peer_identity_checks_dates_and_presence(pki: TestPki, tmp_path: Path) -> None:
    good: Any = _FakeContext({"x509_pem_cert": [pki.analyst().cert.read_bytes()]})
    assert peer_identity(good) == Identity("analyst", "alice")
    with pytest.raises(Unauthenticated, match="expired"):
        peer_identity(good, now=datetime.now(UTC) + timedelta(days=30))
    with pytest.raises(Unauthenticated, match="no client certificate") as info:
        peer_identity(_FakeContext({}))
    assert info.value.reason == "NO_CLIENT_CERTIFICATE"
    with pytest.raises(Unauthenticated) as bad:
        peer_identity(_FakeContext({"x509_pem_cert": [b"junk"]}))
    assert bad.value.reason == "BAD_CERTIFICATE"
