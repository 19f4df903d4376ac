"""Mutual TLS: who may connect, and who the server thinks they are.

The first part checks the transport helpers (:mod:`accord.rpc.transport`) on a small echo server. The
second part is the matrix against the real servers, a node and a coordinator started from TOML
(``tests.integration.federation``): every kind of bad client credential against each server,
with the exact status it must get (a refusal in the TLS handshake shows up as UNAVAILABLE, a
refusal of a valid federation certificate as PERMISSION_DENIED), plain-text clients, and the
client side (the coordinator and the analyst client refuse a server with the wrong name).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from accord.coordinator.client import AccordClient
from accord.coordinator.config import NodeEndpoint
from accord.coordinator.nodes import NodeClient
from accord.errors import PermissionDenied, Unauthenticated, Unavailable
from accord.policies.identity import Identity, identity_from_pem
from accord.policies.pki import IssuedCert, init_federation, issue, leaf_paths
from accord.protos.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc
from accord.rpc.identity import peer_identity, require_role
from accord.rpc.transport import (
    MAX_MESSAGE_BYTES,
    TlsFiles,
    channel_credentials,
    channel_options,
    secure_channel,
    server_credentials,
)
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    Federation,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    start_federation,
    write_node,
)
from tests.signing import answer_request, sign, submit_request

TIMEOUT = 10.0
WHO = "/accord.test.Echo/Who"
COORDINATOR_ONLY = "/accord.test.Echo/CoordinatorOnly"
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS_FRAME = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # length 0, type SETTINGS, stream 0


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
    """Property: the identity a server sees is the accord:// URI of the client certificate."""
    assert _call(secure_channel(server, pki.analyst("alice"), Identity("node", "county"))) == b"analyst/alice"
    assert (
        _call(secure_channel(server, pki.coordinator, Identity("node", "county")))
        == b"coordinator/coordinator"
    )
    assert (
        _call(secure_channel(server, pki.node("district-a"), Identity("node", "county")))
        == b"node/district-a"
    )


def test_health_service_over_mtls(server: str, pki: TestPki) -> None:
    """Property: the standard health service answers over mTLS."""
    with secure_channel(server, pki.coordinator, Identity("node", "county")) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_role_is_enforced(server: str, pki: TestPki) -> None:
    """Property: require_role refuses another role with PERMISSION_DENIED naming the role needed."""
    assert (
        _call(secure_channel(server, pki.coordinator, Identity("node", "county")), COORDINATOR_ONLY)
        == b"coordinator/coordinator"
    )
    err = _fails(secure_channel(server, pki.analyst("alice"), Identity("node", "county")), COORDINATOR_ONLY)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs a coordinator certificate" in err.details()


def test_no_client_certificate_is_refused(server: str, pki: TestPki) -> None:
    """Property: server_credentials demand a client certificate (TLS handshake fails: UNAVAILABLE)."""
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
    channel = grpc.secure_channel(
        server, creds, options=[("grpc.ssl_target_name_override", "county.node.accord")]
    )
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_is_refused(server: str, pki: TestPki, tmp_path: Path) -> None:
    """Property: a client certificate from another CA fails the TLS handshake (UNAVAILABLE)."""
    init_federation(tmp_path, analysts=["alice"])
    cert, key = leaf_paths(tmp_path, "analyst", "alice")
    # The impostor trusts our CA (so it would accept the server) but its own cert is foreign.
    channel = secure_channel(server, TlsFiles(cert, key, pki.ca_cert), Identity("node", "county"))
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_client_that_trusts_another_ca_refuses_the_server(server: str, pki: TestPki, tmp_path: Path) -> None:
    """Property: channel_credentials trust only the given CA: a server from another CA is refused."""
    init_federation(tmp_path)
    tls = pki.analyst("alice")
    channel = secure_channel(
        server, TlsFiles(tls.cert, tls.key, tmp_path / "ca.pem"), Identity("node", "county")
    )
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused(server: str) -> None:
    """Property: the server has no plain-text port: an insecure channel gets UNAVAILABLE."""
    assert _fails(grpc.insecure_channel(server)).code() == grpc.StatusCode.UNAVAILABLE


def test_expired_client_certificate_is_refused(server: str, pki: TestPki, tmp_path: Path) -> None:
    """Property: an expired client certificate fails the TLS handshake (UNAVAILABLE)."""
    now = datetime.now(UTC)
    old = issue(
        pki.root,
        tmp_path,
        "analyst",
        "alice",
        not_before=now - timedelta(days=3),
        not_after=now - timedelta(days=1),
    )
    channel = secure_channel(server, TlsFiles(old.cert, old.key, pki.ca_cert), Identity("node", "county"))
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_not_yet_valid_client_certificate_is_refused(server: str, pki: TestPki, tmp_path: Path) -> None:
    """Property: a not-yet-valid client certificate fails the TLS handshake (UNAVAILABLE)."""
    later = issue(pki.root, tmp_path, "analyst", "alice", not_before=datetime.now(UTC) + timedelta(hours=1))
    channel = secure_channel(server, TlsFiles(later.cert, later.key, pki.ca_cert), Identity("node", "county"))
    assert _fails(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_server_must_have_the_expected_name(server: str, pki: TestPki) -> None:
    """The server holds county's certificate: a client expecting district-a must refuse it."""
    err = _fails(secure_channel(server, pki.coordinator, Identity("node", "district-a")))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_message_size_is_bounded(server: str, pki: TestPki) -> None:
    """Property: channel_options bound what a client sends to MAX_MESSAGE_BYTES (RESOURCE_EXHAUSTED)."""
    with (
        secure_channel(server, pki.coordinator, Identity("node", "county")) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary(WHO)(b"x" * (MAX_MESSAGE_BYTES + 1), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_channel_credentials_need_readable_files(pki: TestPki, tmp_path: Path) -> None:
    """Property: a missing certificate file is a ConfigError saying it does not exist."""
    from accord.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        channel_credentials(TlsFiles(tmp_path / "x.pem", pki.coordinator.key, pki.ca_cert))


class _FakeContext:
    """Just enough of grpc.ServicerContext for peer_identity."""

    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def test_peer_identity_checks_dates_and_presence(pki: TestPki, tmp_path: Path) -> None:
    """Property: peer_identity re-checks presence, parse-ability and dates of the client certificate."""
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


# ---- the matrix against the real node and coordinator ------------------------------------------

# What each server kind expects: its name, the party that may call it, a party of the wrong role,
# and an unlisted party of the right role.
SERVERS = {
    "node": {"name": "county", "valid": ("coordinator", "coordinator"), "wrong_role": ("analyst", "alice")},
    "coordinator": {"name": "coordinator", "valid": ("analyst", "alice"), "wrong_role": ("node", "county")},
}
UNLISTED = {"node": ("coordinator", "rogue"), "coordinator": ("analyst", "bob")}
TLS_REFUSED = ("none", "self-signed", "other-ca", "expired", "not-yet-valid")
IDENTITY_REFUSED = ("wrong-role", "wrong-identity")
CREDENTIALS = (*TLS_REFUSED, *IDENTITY_REFUSED, "valid")


@pytest.fixture(scope="module")
def real_fed(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Node ``county`` (accepting coordinator ``coordinator``) and coordinator (accepting analyst
    ``alice``), started from their TOML files."""
    root = tmp_path_factory.mktemp("mtls-federation")
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    config = write_node(root, node_config(root, "county", [pums_dataset(root, "pums", PUMS_PID)]))
    fed = start_federation(root, pki, {"county": config})
    try:
        yield fed
    finally:
        fed.stop()


def _self_signed(leaf: IssuedCert, ca: Path) -> TlsFiles:
    """The same certificate (subject, accord:// URI, dates, key) signed by its own key."""
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    key = serialization.load_pem_private_key(leaf.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if ext.oid != ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(ext.value, ext.critical)
    path = leaf.cert.with_name(f"{leaf.cert.stem}-self-signed.pem")
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return TlsFiles(path, leaf.key, ca)


Credentials = dict[tuple[str, str], TlsFiles | None]


def _issue(pki: TestPki, out: Path, role: str, name: str, **dates: datetime) -> TlsFiles:
    """A certificate from the federation CA, written under ``out`` (not into the session PKI)."""
    leaf = issue(pki.root, out, role, name, **dates)
    return TlsFiles(leaf.cert, leaf.key, pki.ca_cert)


@pytest.fixture(scope="module")
def credentials(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """(server kind, credential kind) -> the client's TLS files (None: no client certificate).

    Every TLS-refused certificate carries the identity of the caller the server accepts, so only
    the defect under test is wrong (see test_bad_credentials_carry_the_valid_identity)."""
    now = datetime.now(UTC)
    root = tmp_path_factory.mktemp("credentials")
    other = init_federation(root / "other-ca", coordinator="coordinator", analysts=["alice"])
    out: Credentials = {}
    for kind, spec in SERVERS.items():
        role, name = spec["valid"]
        foreign = TlsFiles(*leaf_paths(root / "other-ca", role, name), pki.ca_cert)
        assert foreign.cert in {i.cert for i in other.issued}
        out[(kind, "none")] = None
        own = issue(pki.root, root / kind / "self-signed", role, name)
        out[(kind, "self-signed")] = _self_signed(own, pki.ca_cert)
        out[(kind, "other-ca")] = foreign
        out[(kind, "expired")] = _issue(
            pki,
            root / kind / "expired",
            role,
            name,
            not_before=now - timedelta(days=3),
            not_after=now - timedelta(days=1),
        )
        out[(kind, "not-yet-valid")] = _issue(
            pki, root / kind / "later", role, name, not_before=now + timedelta(hours=1)
        )
        out[(kind, "wrong-role")] = pki.tls(*spec["wrong_role"])
        out[(kind, "wrong-identity")] = _issue(pki, root / kind / "unlisted", *UNLISTED[kind])
        out[(kind, "valid")] = pki.tls(role, name)
    return out


def _channel(fed: Federation, kind: str, tls: TlsFiles | None) -> grpc.Channel:
    """A channel of its own (no shared connection) to the ``kind`` server, verifying its name."""
    address = fed.node_address("county") if kind == "node" else fed.address
    name = Identity(kind, str(SERVERS[kind]["name"]))
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    if tls is None:  # trusts the federation CA, presents no certificate
        creds = grpc.ssl_channel_credentials(root_certificates=fed.pki.ca_cert.read_bytes())
        return grpc.secure_channel(address, creds, options=[*channel_options(name), *own_connection])
    return secure_channel(address, tls, name, options=own_connection)


def _calls(kind: str, channel: grpc.Channel, pki: TestPki) -> dict[str, Callable[[], Any]]:
    """The server's query and catalog RPCs, each with a valid request (signed by analyst alice)."""
    signed = sign(pki.analyst(), "SELECT COUNT(*) FROM pums")
    if kind == "node":
        node = node_pb2_grpc.NodeServiceStub(channel)
        return {
            "Answer": lambda: node.Answer(answer_request(signed), timeout=TIMEOUT),
            "GetCatalog": lambda: node.GetCatalog(node_pb2.GetCatalogRequest(), timeout=TIMEOUT),
        }
    coordinator = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
    return {
        "Submit": lambda: coordinator.Submit(submit_request(signed), timeout=TIMEOUT),
        "GetCatalog": lambda: coordinator.GetCatalog(
            coordinator_pb2.FederatedCatalogRequest(), timeout=TIMEOUT
        ),
    }


def _health_check(channel: grpc.Channel) -> Callable[[], Any]:
    stub = health_pb2_grpc.HealthStub(channel)
    return lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)


def _reflection_list(channel: grpc.Channel) -> Callable[[], Any]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    return lambda: list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """("OK", "") or (status code name, the ErrorInfo reasons of the rich status)."""
    try:
        call()
    except grpc.RpcError as err:
        reasons = [
            info.reason
            for info in (_error_info(d) for d in (rpc_status.from_call(err) or status_pb2.Status()).details)
            if info is not None
        ]
        return err.code().name, ",".join(reasons)
    return "OK", ""


def _error_info(detail: Any) -> error_details_pb2.ErrorInfo | None:
    if not detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        return None
    info = error_details_pb2.ErrorInfo()
    detail.Unpack(info)
    return info


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("kind", list(SERVERS))
def test_client_credential_matrix_on_real_servers(
    real_fed: Federation,
    credentials: Credentials,
    kind: str,
    credential: str,
) -> None:
    """Property: on the real node and coordinator, a client with no certificate, a self-signed
    one, one from another CA, an expired or a not-yet-valid one is refused in the TLS handshake
    (UNAVAILABLE on every RPC, the health service included: no service at all); a valid federation
    certificate of a role the server does not serve is refused on every RPC, health and reflection
    included, with PERMISSION_DENIED (ErrorInfo WRONG_ROLE); one of the right role that the server
    does not list is refused its RPCs with CALLER_NOT_ALLOWED; the listed caller is answered."""
    with _channel(real_fed, kind, credentials[(kind, credential)]) as channel:
        outcomes = {rpc: _outcome(call) for rpc, call in _calls(kind, channel, real_fed.pki).items()}
        if credential not in ("wrong-identity", "valid"):
            outcomes["Health"] = _outcome(_health_check(channel))
            outcomes["Reflection"] = _outcome(_reflection_list(channel))
    if credential in TLS_REFUSED:
        expected = ("UNAVAILABLE", "")
    elif credential == "wrong-role":
        expected = ("PERMISSION_DENIED", "WRONG_ROLE")
    elif credential in IDENTITY_REFUSED:
        expected = ("PERMISSION_DENIED", "CALLER_NOT_ALLOWED")
    else:
        expected = ("OK", "")
    assert outcomes == dict.fromkeys(outcomes, expected)


def test_bad_credentials_carry_the_valid_identity(credentials: Credentials) -> None:
    """Property (of the matrix above): each TLS-refused certificate names exactly the caller the
    server accepts, and has exactly one defect, so its refusal is due to that defect alone."""
    now = datetime.now(UTC)
    for kind, spec in SERVERS.items():
        for credential in ("self-signed", "other-ca", "expired", "not-yet-valid"):
            tls = credentials[(kind, credential)]
            assert tls is not None
            cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
            assert identity_from_pem(tls.cert.read_bytes()) == Identity(*spec["valid"])
            in_date = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
            assert in_date == (credential in ("self-signed", "other-ca")), credential
            assert (cert.issuer == cert.subject) == (credential == "self-signed"), credential


@pytest.mark.parametrize("kind", list(SERVERS))
def test_plaintext_to_real_servers_is_refused(real_fed: Federation, kind: str) -> None:
    """Property: neither server speaks plain text: an insecure gRPC channel gets UNAVAILABLE for the
    query RPC and the health service, and a raw TCP client sending the HTTP/2 client preface gets
    the connection closed without a single byte back (no HTTP/2 settings, no service)."""
    address = real_fed.node_address("county") if kind == "node" else real_fed.address
    with grpc.insecure_channel(address) as channel:
        outcomes = {rpc: _outcome(call)[0] for rpc, call in _calls(kind, channel, real_fed.pki).items()}
        outcomes["Health"] = _outcome(_health_check(channel))[0]
    assert set(outcomes.values()) == {"UNAVAILABLE"}, outcomes
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        raw.sendall(HTTP2_PREFACE + EMPTY_SETTINGS_FRAME)
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
    assert received == b""


def test_analyst_client_refuses_a_server_with_another_name(real_fed: Federation, pki: TestPki) -> None:
    """Property: the analyst client only talks to a server whose certificate carries the expected
    coordinator name: a node (a valid federation certificate, but named ``county``) posing as the
    coordinator, and the real coordinator when another name is expected, are both refused
    (Unavailable) before any query is sent; the right name is accepted."""
    node_address = real_fed.node_address("county")
    with (
        AccordClient(node_address, pki.analyst(), "coordinator", retries=0, agreement="open") as client,
        pytest.raises(Unavailable),
    ):
        client.query_release("SELECT COUNT(*) FROM pums", "1")
    with (
        AccordClient(real_fed.address, pki.analyst(), "other", retries=0, agreement="open") as client,
        pytest.raises(Unavailable),
    ):
        client.catalog()
    with AccordClient(real_fed.address, pki.analyst(), "coordinator", retries=0, agreement="open") as client:
        assert "pums" in client.catalog()


def test_coordinator_refuses_a_node_with_another_name(real_fed: Federation, pki: TestPki) -> None:
    """Property: the coordinator verifies each node's certificate name: node ``county`` listening at
    the address configured for ``district-a`` is not trusted as district-a (no catalog, reported
    unavailable), while the same address under its real name is."""
    address = real_fed.node_address("county")
    impostor = NodeClient(NodeEndpoint("district-a", address), pki.coordinator)
    genuine = NodeClient(NodeEndpoint("county", address), pki.coordinator)
    try:
        assert impostor.catalog() is None
        assert impostor.last_error == "unavailable"
        schemas = genuine.catalog()
        assert schemas is not None and [s.name for s in schemas] == ["pums"]
    finally:
        impostor.close()
        genuine.close()
