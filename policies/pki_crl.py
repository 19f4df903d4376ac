"""Writing the federation's certificate revocation list: revoking a certificate, and signing the
list anew before its next update passes (``accord pki revoke`` and ``accord pki crl``).

The CRL lives beside the CA (``DIR/crl.pem``, written empty by :func:`accord.policies.pki.init_federation`),
is signed by the CA key, numbered (each version one more than the last) and written atomically, so a
server reloading it never sees half a file. Reading and checking it is
:mod:`accord.policies.revocation`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from accord.errors import ConfigError
from accord.policies.pki import CRL_DAYS, _check_days, _load_ca, _write_crl
from accord.policies.revocation import CRL_FILE, load_crl

__all__ = ["refresh_crl", "revoke"]


def revoke(ca_dir: Path, cert_path: Path, crl_days: int = CRL_DAYS) -> tuple[x509.Certificate, Path]:
    """Add the certificate in ``cert_path`` to the CRL of the CA in ``ca_dir`` (``DIR/crl.pem``).

    The CRL keeps every earlier revocation, its number goes up by one, and it is written
    atomically, so a server reloading it never sees half a file. Returns the revoked certificate
    and the CRL's path. Revoking a certificate twice is harmless.
    """
    ca_dir = Path(ca_dir)
    ca_cert, ca_key = _load_ca(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot read {cert_path}: {err.strerror}") from None
    except ValueError:
        raise ConfigError(f"{cert_path} is not a PEM X.509 certificate") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"{cert_path} was not issued by the CA in {ca_dir}; revoke it with the CA that issued it"
        ) from None
    _check_days(crl_days)
    crl_path = ca_dir / CRL_FILE
    earlier: list[x509.RevokedCertificate] = []
    number = 1
    if crl_path.exists():
        number = load_crl(crl_path, [ca_cert]).number + 1
        earlier = [
            e for e in x509.load_pem_x509_crl(crl_path.read_bytes()) if e.serial_number != cert.serial_number
        ]
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(cert.serial_number)
        .revocation_date(datetime.now(UTC))
        .build()
    )
    _write_crl(crl_path, ca_cert, ca_key, [*earlier, entry], number, crl_days)
    return cert, crl_path


def refresh_crl(ca_dir: Path, crl_days: int = CRL_DAYS) -> Path:
    """Sign the CRL of the CA in ``ca_dir`` anew: the same revocations, the next number, a fresh
    next update ``crl_days`` from now. Run it before the next update passes (servers refuse to
    start with a CRL past it); returns the CRL's path."""
    ca_dir = Path(ca_dir)
    ca_cert, ca_key = _load_ca(ca_dir)
    _check_days(crl_days)
    crl_path = ca_dir / CRL_FILE
    if not crl_path.exists():
        raise ConfigError(f"no CRL in {ca_dir}; `accord pki init` writes one, `accord pki revoke` adds to it")
    number = load_crl(crl_path, [ca_cert]).number + 1
    entries = list(x509.load_pem_x509_crl(crl_path.read_bytes()))
    _write_crl(crl_path, ca_cert, ca_key, entries, number, crl_days)
    return crl_path
