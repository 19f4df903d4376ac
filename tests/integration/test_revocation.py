"""Revocation: `accord pki revoke` writes a CRL; nodes and the coordinator load it from their config,
reload it when it changes, and refuse a revoked party from its next call, on real servers.

Each test works on its own copy of the session CA (``ca.pem``, ``ca.key``): revoking writes
``crl.pem`` beside the CA, and the session PKI is shared by every test.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest
from cryptography import x509

from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import start_coordinator
from accord.errors import ConfigError, Unauthenticated, Unavailable
from accord.node.config import load_node_config
from accord.node.server import start_node
from accord.policies.pki import CA_CERT, CA_KEY, issue
from accord.policies.pki_crl import revoke
from accord.policies.revocation import CRL_FILE, CrlFile, load_crl
from accord.rpc.transport import TlsFiles
from tests.conftest import TestPki
from tests.integration.commands import accord
from tests.integration.federation import (
    PUMS_PID,
    Federation,
    coordinator_config,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    write_coordinator,
    write_node,
)

LISTEN = "127.0.0.1:0"
RELOAD_WAIT = 10.0
"""Servers look at the CRL at most once a second; allow for a loaded machine."""


def _ca_copy(pki: TestPki, folder: Path) -> Path:
    """A copy of the session CA in ``folder`` with an empty CRL (what `accord pki init` writes)."""
    folder.mkdir(parents=True)
    for name in (CA_CERT, CA_KEY):
        shutil.copy(pki.root / name, folder / name)
    shutil.copy(pki.root / CRL_FILE, folder / CRL_FILE)
    return folder


@pytest.fixture
def crl_fed(pki: TestPki, tmp_path: Path) -> tuple[Federation, Path]:
    """Node county and the coordinator, both with ``[tls] crl`` naming the CRL of a copy of the
    session CA; returns the federation and that CA's folder."""
    ca_dir = _ca_copy(pki, tmp_path / "ca")
    crl = ca_dir / CRL_FILE
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    node = write_node(
        tmp_path, node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)], tls_crl=crl)
    )
    running_node = start_node(load_node_config(node), listen=LISTEN)
    config = coordinator_config(
        tmp_path, {"county": f"127.0.0.1:{running_node.port}"}, analysts=("alice", "bob")
    )
    config = dataclasses.replace(config, tls=dataclasses.replace(config.tls, crl=crl))
    running, service = start_coordinator(
        load_coordinator_config(write_coordinator(tmp_path, config)), listen=LISTEN
    )
    fed = Federation(tmp_path, pki, {"county": running_node}, running, service)
    yield fed, ca_dir
    fed.stop()


def _until_refused(ask: object, what: type[Exception]) -> Exception:
    deadline = time.monotonic() + RELOAD_WAIT
    while True:
        try:
            ask()  # type: ignore[operator]
        except what as err:
            return err
        assert time.monotonic() < deadline, "still answered after the CRL changed"
        time.sleep(0.2)


def test_a_revoked_analyst_is_refused_on_her_next_call(
    crl_fed: tuple[Federation, Path], pki: TestPki
) -> None:
    """Property: alice is answered; once her certificate is revoked (the coordinator running, her
    connection open), her next call is refused with UNAUTHENTICATED (CERTIFICATE_REVOKED by the
    coordinator, or SIGNER_REVOKED by the node if it read the new CRL first), while bob
    is still answered. No restart."""
    fed, ca_dir = crl_fed
    sql = "SELECT COUNT(*) AS n FROM pums"
    with fed.client(retries=0) as alice, fed.client(tls=pki.analyst("bob"), retries=0) as bob:
        alice.query_release(sql, "1")
        revoke(ca_dir, pki.analyst("alice").cert)
        refused = _until_refused(lambda: alice.query_release(sql, "1"), Unauthenticated)
        # The coordinator refuses her call, or (if the node read the new CRL first) the node
        # refuses the query she signed: either way, refused as revoked.
        assert isinstance(refused, Unauthenticated)
        assert refused.reason in ("CERTIFICATE_REVOKED", "SIGNER_REVOKED")
        assert "analyst/alice" in refused.message and "revoked" in refused.message
        assert bob.query_release(sql, "1").rows


def test_a_revoked_coordinator_is_refused_by_the_node(crl_fed: tuple[Federation, Path], pki: TestPki) -> None:
    """Property: once the coordinator's certificate is revoked, the node refuses its calls (health
    checks included): the analyst gets no answer from county."""
    fed, ca_dir = crl_fed
    channel, _ = fed.node_stub("county")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    with channel:
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        revoke(ca_dir, pki.coordinator.cert)
        import grpc

        def check() -> None:
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)

        err = _until_refused(check, grpc.RpcError)
        assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_reissued_certificate_revokes_the_old_key(
    crl_fed: tuple[Federation, Path], pki: TestPki, tmp_path: Path
) -> None:
    """Property: `accord pki issue` for a party that already has a certificate revokes the one it
    replaces (the finding: a re-issued certificate's old key kept working); the new one works."""
    fed, ca_dir = crl_fed
    first = issue(ca_dir, ca_dir, "analyst", "bob")  # bob's certificate in this CA's folder
    old = tmp_path / "bob-old"
    old.mkdir()
    shutil.copy(first.cert, old / "bob.pem")
    shutil.copy(first.key, old / "bob.key")
    old_tls = TlsFiles(old / "bob.pem", old / "bob.key", ca_dir / CA_CERT)
    sql = "SELECT COUNT(*) AS n FROM pums"
    with fed.client(tls=old_tls, retries=0) as client:
        client.query_release(sql, "1")
    result = accord(
        "pki",
        "issue",
        "--dir",
        str(ca_dir),
        "--role",
        "analyst",
        "--name",
        "bob",
        cwd=tmp_path,
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "revoked the certificate it replaces" in result.stdout
    with fed.client(tls=old_tls, retries=0) as client:
        _until_refused(lambda: client.query_release(sql, "1"), Unauthenticated)
    new_tls = TlsFiles(first.cert, first.key, ca_dir / CA_CERT)  # the files now hold the new pair
    with fed.client(tls=new_tls, retries=0) as client:
        assert client.query_release(sql, "1").rows


def test_pki_revoke_command_and_the_crl_it_writes(pki: TestPki, tmp_path: Path) -> None:
    """Property: `accord pki revoke --party` adds the party's certificate to DIR/crl.pem, keeps
    earlier entries, raises the CRL number, and the CRL verifies against the CA; a certificate of
    another CA or a party without a certificate is refused with a message saying so."""
    ca_dir = _ca_copy(pki, tmp_path / "ca")
    before = load_crl(ca_dir / CRL_FILE, [x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())])
    assert before.serials == frozenset()
    shutil.copytree(pki.root / "analysts", ca_dir / "analysts")
    for party in ("analyst/alice", "analyst/bob"):
        result = accord("pki", "revoke", "--dir", str(ca_dir), "--party", party, cwd=tmp_path, home=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"revoked {party}" in result.stdout
    cas = [x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())]
    after = load_crl(ca_dir / CRL_FILE, cas)
    serials = {
        x509.load_pem_x509_certificate(p.read_bytes()).serial_number
        for p in (pki.analyst("alice").cert, pki.analyst("bob").cert)
    }
    assert after.serials == serials and after.number == before.number + 2
    missing = accord(
        "pki", "revoke", "--dir", str(ca_dir), "--party", "node/nobody", cwd=tmp_path, home=tmp_path
    )
    assert missing.returncode == 2 and "no certificate issued for node/nobody" in missing.stderr
    other = tmp_path / "other"
    from accord.policies.pki import init_federation

    init_federation(other, analysts=["eve"])
    foreign = accord(
        "pki",
        "revoke",
        "--dir",
        str(ca_dir),
        "--cert",
        str(other / "analysts" / "eve.pem"),
        cwd=tmp_path,
        home=tmp_path,
    )
    assert foreign.returncode == 2 and "was not issued by the CA" in foreign.stderr


def test_bad_crl_refused_at_start_and_kept_out_when_it_changes(pki: TestPki, tmp_path: Path) -> None:
    """Property: a server does not start with a CRL that is not a CRL, that another CA signed, or
    that lists its own certificate; a running server given a tampered CRL keeps the last good one."""
    ca_dir = _ca_copy(pki, tmp_path / "ca")
    crl = ca_dir / CRL_FILE
    cas = [x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())]
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    node = write_node(
        tmp_path, node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)], tls_crl=crl)
    )
    kept = CrlFile(crl, cas)
    good = crl.read_bytes()
    crl.write_bytes(good.replace(b"MI", b"MJ", 1))  # one changed byte inside the signed body
    with pytest.raises(ConfigError, match=r"not a PEM certificate revocation list|does not verify"):
        start_node(load_node_config(node), listen=LISTEN)
    time.sleep(1.1)
    assert kept.current().serials == frozenset()  # the tampered file was not taken
    other = tmp_path / "other"
    from accord.policies.pki import init_federation

    init_federation(other)
    shutil.copy(other / CRL_FILE, crl)
    with pytest.raises(ConfigError, match="another CA signed it"):
        start_node(load_node_config(node), listen=LISTEN)
    crl.write_bytes(good)
    revoke(ca_dir, pki.node("county").cert)
    with pytest.raises(ConfigError, match="is on the revocation list"):
        start_node(load_node_config(node), listen=LISTEN)


def test_the_coordinator_stops_using_a_node_whose_certificate_is_revoked(
    crl_fed: tuple[Federation, Path], pki: TestPki
) -> None:
    """Property: once node county's certificate is on the coordinator's CRL, the coordinator looks at
    the certificate the node presents (before its next query, since the CRL changed), finds it
    revoked and sends it nothing more: queries and budget requests fail as unavailable."""
    fed, ca_dir = crl_fed
    sql = "SELECT COUNT(*) AS n FROM pums"
    with fed.client(retries=0) as alice:
        assert alice.query_release(sql, "1").contributing_nodes == ("county",)
        revoke(ca_dir, pki.node("county").cert)
        refused = _until_refused(lambda: alice.query_release(sql, "1"), Unavailable)
        assert "county" in refused.message
        with pytest.raises(Unavailable, match="county"):  # nor is it asked anything else
            alice.budget("open")
    assert fed.service.clients["county"].last_error.startswith("node county presents a revoked certificate")


def test_a_crl_past_its_next_update_is_refused_at_start_and_pki_crl_signs_it_anew(
    pki: TestPki, tmp_path: Path
) -> None:
    """Property: a server does not start with a CRL past its next update (it may be an old copy put
    back); `accord pki crl` signs the same revocations anew with the next number and a fresh next
    update, and the server starts with that."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes, serialization

    ca_dir = _ca_copy(pki, tmp_path / "ca")
    revoke(ca_dir, pki.analyst("bob").cert)
    crl = ca_dir / CRL_FILE
    cas = [x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())]
    before = load_crl(crl, cas)
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    old = x509.load_pem_x509_crl(crl.read_bytes())
    now = datetime.now(UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(old.issuer)
    for entry in old:
        builder = builder.add_revoked_certificate(entry)
    stale = (
        builder.last_update(now - timedelta(days=40))
        .next_update(now - timedelta(days=10))
        .add_extension(x509.CRLNumber(before.number), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    crl.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    node = write_node(
        tmp_path, node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)], tls_crl=crl)
    )
    with pytest.raises(ConfigError, match="passed its next update"):
        start_node(load_node_config(node), listen=LISTEN)
    result = accord("pki", "crl", "--dir", str(ca_dir), "--days", "7", cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stderr
    fresh = load_crl(crl, cas)
    assert fresh.serials == before.serials and fresh.number == before.number + 1
    assert fresh.next_update is not None and fresh.next_update > now + timedelta(days=6)
    start_node(load_node_config(node), listen=LISTEN).stop(grace=0)
