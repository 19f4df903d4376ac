"""A development PKI for one federation: a CA and the certificates of its parties.

Layout written by :func:`init_federation` (and ``accord pki init``)::

    DIR/ca.pem                      federation CA certificate (give it to every party)
    DIR/ca.key                      CA private key (mode 0600; keep it off the servers)
    DIR/crl.pem                     revocation list (empty at first; `accord pki revoke` adds to it)
    DIR/coordinators/<name>.pem     coordinator certificate + .key
    DIR/nodes/<name>.pem            one per node + .key
    DIR/analysts/<name>.pem         one per analyst + .key
    DIR/auditors/<name>.pem         one per auditor + .key

Every leaf certificate identifies its holder with the URI SAN ``accord://<role>/<name>``
(authoritative, see :mod:`accord.policies.identity`) and carries the DNS SAN ``<name>.<role>.accord``
(:attr:`~accord.policies.identity.Identity.server_name`): clients verify a server by that name, so
both its name and its role are checked in the TLS handshake. Keys are
EC P-256, signatures ECDSA with SHA-256. Files are written atomically; private keys with mode
0600. This is for development and tests: a production federation would use its own CA.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.errors import ConfigError
from accord.policies.identity import NAME_PATTERN, ROLES, Identity
from accord.policies.revocation import CRL_FILE

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CRL_DAYS",
    "DEFAULT_DAYS",
    "ORGANIZATION",
    "Federation",
    "IssuedCert",
    "create_ca",
    "init_federation",
    "issue",
    "leaf_paths",
    "validate_name",
]

ORGANIZATION = "Accord federation"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
DEFAULT_DAYS = 365
CRL_DAYS = 30
"""A CRL's next update: servers log a warning when a CRL older than this is still in force."""
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedCert:
    """Where one party's certificate and key were written."""

    identity: Identity
    cert: Path
    key: Path


@dataclass(frozen=True)
class Federation:
    """What :func:`init_federation` wrote."""

    ca_cert: Path
    ca_key: Path
    issued: tuple[IssuedCert, ...]


def validate_name(role: str, name: str) -> Identity:
    """The identity ``role``/``name``, or :class:`ConfigError` saying what is wrong with them."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"name {name!r} is not allowed: use 1-63 lower-case letters, digits or '-', "
            "starting with a letter or digit"
        )
    return Identity(role, name)


def leaf_paths(out_dir: Path, role: str, name: str) -> tuple[Path, Path]:
    """``(certificate, key)`` paths of ``role``/``name`` under ``out_dir``."""
    folder = Path(out_dir) / f"{role}s"
    return folder / f"{name}.pem", folder / f"{name}.key"


def create_ca(
    out_dir: Path,
    name: str = "Accord development CA",
    days: int = DEFAULT_DAYS,
    force: bool = False,
    not_before: datetime | None = None,
) -> tuple[Path, Path]:
    """Create a federation CA in ``out_dir`` (``ca.pem``, ``ca.key``); return their paths.

    Refuses to replace an existing CA unless ``force``: every certificate it issued would stop
    being trusted.
    """
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / CA_CERT, out_dir / CA_KEY
    if not force and (cert_path.exists() or key_path.exists()):
        raise ConfigError(
            f"a CA already exists in {out_dir}; replacing it would invalidate every certificate it issued. "
            "Pass --force (force=True) to replace it, or use `accord pki issue` to add certificates"
        )
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _start(not_before)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_key(key_path, key)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def issue(
    ca_dir: Path,
    out_dir: Path,
    role: str,
    name: str,
    days: int = DEFAULT_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> IssuedCert:
    """Issue a leaf certificate for ``role``/``name`` from the CA in ``ca_dir``.

    Writes ``out_dir/<role>s/<name>.pem`` and ``.key`` (replacing any earlier ones). Validity
    starts at ``not_before`` (default: now minus 5 minutes of clock skew) and ends at
    ``not_after`` (default: ``days`` later); tests use both to make expired and not-yet-valid
    certificates.
    """
    identity = validate_name(role, name)
    ca_cert, ca_key = _load_ca(Path(ca_dir))
    start = _start(not_before)
    if not_after is None:
        _check_days(days)
        end = start + timedelta(days=days)
    else:
        end = not_after if not_after.tzinfo else not_after.replace(tzinfo=UTC)
    if end <= start:
        raise ConfigError(f"the certificate would end ({end:%Y-%m-%d}) before it starts ({start:%Y-%m-%d})")
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(identity.uri),
                    x509.DNSName(identity.server_name),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = leaf_paths(Path(out_dir), role, name)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write_key(key_path, key)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return IssuedCert(identity, cert_path, key_path)


def init_federation(
    out_dir: Path,
    coordinator: str = "coordinator",
    nodes: Iterable[str] = (),
    analysts: Iterable[str] = (),
    days: int = DEFAULT_DAYS,
    force: bool = False,
    auditors: Iterable[str] = (),
) -> Federation:
    """Create a CA and certificates for one coordinator, ``nodes``, ``analysts`` and ``auditors``
    in ``out_dir``."""
    out_dir = Path(out_dir)
    wanted = (
        [("coordinator", coordinator)]
        + [("node", n) for n in nodes]
        + [("analyst", a) for a in analysts]
        + [("auditor", a) for a in auditors]
    )
    seen: set[tuple[str, str]] = set()
    for role, name in wanted:
        validate_name(role, name)
        if (role, name) in seen:
            raise ConfigError(f"{role} {name!r} is listed twice")
        seen.add((role, name))
    ca_cert, ca_key = create_ca(out_dir, days=days, force=force)
    cert, key = _load_ca(out_dir)
    _write_crl(out_dir / CRL_FILE, cert, key, [], 0)  # empty: servers can name it from day one
    issued = tuple(issue(out_dir, out_dir, role, name, days=days) for role, name in wanted)
    return Federation(ca_cert, ca_key, issued)


def _start(not_before: datetime | None) -> datetime:
    if not_before is None:
        return datetime.now(UTC) - _CLOCK_SKEW
    return not_before if not_before.tzinfo else not_before.replace(tzinfo=UTC)


def _check_days(days: int) -> None:
    if days < 1:
        raise ConfigError(f"--days must be at least 1, not {days}")


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as err:
        raise ConfigError(
            f"no CA in {ca_dir} ({err.filename} is missing); create one with `accord pki init`"
        ) from None
    except ValueError:
        raise ConfigError(
            f"the CA files in {ca_dir} are not valid PEM; recreate them with `accord pki init`"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"{key_path} is not an EC private key; recreate the CA with `accord pki init --force`"
        )
    return cert, key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(path, pem, 0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_crl(
    path: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    entries: Iterable[x509.RevokedCertificate],
    number: int,
    days: int = CRL_DAYS,
) -> None:
    now = datetime.now(UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    crl = (
        builder.last_update(now)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
