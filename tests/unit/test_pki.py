"""The development PKI, identity parsing and the start-up certificate checks."""

from __future__ import annotations

import argparse
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.errors import AccordError, ConfigError, Unauthenticated
from accord.policies import pki_cli
from accord.policies.identity import Identity, identity_from_pem
from accord.policies.pki import create_ca, init_federation, issue, leaf_paths
from accord.rpc.transport import TlsFiles, check_certificate_files
from tests.conftest import TestPki

NOW = datetime.now(UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_layout_and_identities(pki: TestPki) -> None:
    assert pki.ca_cert.is_file() and pki.ca_key.is_file()
    for role, name in [
        ("coordinator", "coordinator"),
        ("node", "county"),
        ("node", "district-b"),
        ("analyst", "alice"),
    ]:
        tls = pki.tls(role, name)
        assert tls.cert == pki.root / f"{role}s" / f"{name}.pem"
        assert identity_from_pem(tls.cert.read_bytes()) == Identity(role, name)
        assert check_certificate_files(tls) == Identity(role, name)


def test_key_files_are_private(pki: TestPki) -> None:
    for key in [pki.ca_key, pki.node("county").key, pki.analyst().key]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list(pki.root.rglob("*.tmp"))


def test_leaf_encoding(pki: TestPki) -> None:
    cert = _cert(pki.node("district-a").cert)
    ca = _cert(pki.ca_cert)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "district-a"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "node"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Accord federation"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["accord://node/district-a"]
    assert san.get_values_for_type(x509.DNSName) == ["district-a.node.accord"]
    assert san.get_values_for_type(x509.IPAddress) == []  # verified by name and role, never by address
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_agreement and not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_refuses_to_overwrite_ca(tmp_path: Path) -> None:
    create_ca(tmp_path)
    before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(ConfigError, match=r"already exists.*--force"):
        create_ca(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        init_federation(tmp_path, nodes=["n1"])
    assert (tmp_path / "ca.pem").read_bytes() == before
    create_ca(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != before


@pytest.mark.parametrize(
    ("role", "name"),
    [("node", "County"), ("node", "-x"), ("node", ""), ("node", "a" * 64), ("node", "a/b"), ("admin", "x")],
)
def test_rejects_bad_names_and_roles(tmp_path: Path, role: str, name: str) -> None:
    create_ca(tmp_path)
    with pytest.raises(ConfigError):
        issue(tmp_path, tmp_path, role, name)


def test_init_rejects_duplicates_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        init_federation(tmp_path, nodes=["a", "a"])
    assert not (tmp_path / "ca.pem").exists()


def test_identity_needs_accord_uri(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node")])

    def make(*sans: x509.GeneralName) -> bytes:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=1))
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)

    for pem in [
        make(),
        make(x509.DNSName("county")),
        make(x509.UniformResourceIdentifier("accord://admin/root")),
        make(x509.UniformResourceIdentifier("accord://node/Bad_Name")),
        make(
            x509.UniformResourceIdentifier("accord://node/a"),
            x509.UniformResourceIdentifier("accord://node/b"),
        ),
        b"not a certificate",
    ]:
        with pytest.raises(Unauthenticated) as info:
            identity_from_pem(pem)
        assert info.value.reason == "BAD_CERTIFICATE"
    assert identity_from_pem(make(x509.UniformResourceIdentifier("accord://node/a"))) == Identity("node", "a")


def test_expired_and_not_yet_valid_are_detected(tmp_path: Path) -> None:
    ca_cert, _ = create_ca(tmp_path, not_before=NOW - timedelta(days=30), days=60)
    expired = issue(
        tmp_path,
        tmp_path,
        "node",
        "old",
        not_before=NOW - timedelta(days=10),
        not_after=NOW - timedelta(days=1),
    )
    with pytest.raises(ConfigError, match=r"expired on .*accord pki issue"):
        check_certificate_files(TlsFiles(expired.cert, expired.key, ca_cert))
    future = issue(tmp_path, tmp_path, "node", "new", not_before=NOW + timedelta(days=1))
    with pytest.raises(ConfigError, match="not valid until"):
        check_certificate_files(TlsFiles(future.cert, future.key, ca_cert))
    # ... and both are fine at a time inside their validity period
    check_certificate_files(TlsFiles(expired.cert, expired.key, ca_cert), now=NOW - timedelta(days=5))
    check_certificate_files(TlsFiles(future.cert, future.key, ca_cert), now=NOW + timedelta(days=2))
    with pytest.raises(ConfigError, match=r"CA certificate .* expired"):
        check_certificate_files(TlsFiles(future.cert, future.key, ca_cert), now=NOW + timedelta(days=40))


def test_check_rejects_other_ca_and_wrong_key(pki: TestPki, tmp_path: Path) -> None:
    init_federation(tmp_path, nodes=["county"])
    other = TlsFiles(*leaf_paths(tmp_path, "node", "county"), pki.ca_cert)
    with pytest.raises(ConfigError, match="not issued by the CA"):
        check_certificate_files(other)
    mixed = TlsFiles(pki.node("county").cert, pki.node("district-a").key, pki.ca_cert)
    with pytest.raises(ConfigError, match="does not belong"):
        check_certificate_files(mixed)


def test_missing_files_are_named(pki: TestPki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=f"{missing}.*does not exist"):
        check_certificate_files(TlsFiles(missing, pki.node("county").key, pki.ca_cert))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello")
    with pytest.raises(ConfigError, match=f"private key file {garbage} is not a PEM"):
        check_certificate_files(TlsFiles(pki.node("county").cert, garbage, pki.ca_cert))


def main(argv: list[str]) -> int:
    """Like ``accord`` (accord.cli.main) but with only the ``pki`` subcommand registered."""
    parser = argparse.ArgumentParser(prog="accord")
    pki_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except AccordError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    return status


def test_cli_init_issue_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "certs"
    assert (
        main(["pki", "init", "--dir", str(d), "--node", "a", "--node", "b", "--analyst", "al", "--days", "3"])
        == 0
    )
    out = capsys.readouterr().out
    assert str(d / "nodes" / "a.pem") in out and str(d / "ca.key") in out
    assert (d / "coordinators" / "coordinator.pem").is_file()
    assert main(["pki", "init", "--dir", str(d)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["pki", "issue", "--dir", str(d), "--role", "analyst", "--name", "bob"]) == 0
    assert str(d / "analysts" / "bob.pem") in capsys.readouterr().out
    assert main(["pki", "show", str(d / "analysts" / "bob.pem")]) == 0
    out = capsys.readouterr().out
    assert "role:       analyst" in out and "name:       bob" in out and "status:     valid" in out
    assert "Accord development CA" in out


def test_register_sets_func() -> None:
    parser = argparse.ArgumentParser()
    pki_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pki", "issue", "--dir", "x", "--role", "node", "--name", "n"])
    assert callable(args.func)
