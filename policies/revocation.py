"""Revoked certificates: the federation's certificate revocation list (CRL), read and kept current.

``accord pki revoke`` (:func:`accord.policies.pki.revoke`) writes ``DIR/crl.pem``, an X.509 CRL
signed by the federation CA. A server names that file in its config (``[tls] crl``);
:class:`CrlFile` loads it, checks its signature against the CA, and reloads it whenever the file
changes (looked at no more than once a second), so a revocation takes effect on the revoked
party's next call without a restart. A CRL that cannot be read, does not verify or is past its
next update is refused at start-up; if a later version is bad or older, the last good one stays
in force and the problem is logged (a half-written copy must not open the door).

A certificate is revoked when the CRL lists its serial number and the CRL's issuer is the
certificate's issuer. No grpc here: auditors' tools and the PKI commands use it too.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from accord.errors import ConfigError

__all__ = ["CRL_FILE", "CrlFile", "Revocations", "load_crl", "parse_crl"]

log = logging.getLogger(__name__)

CRL_FILE = "crl.pem"
"""Where ``accord pki revoke`` writes the CRL, in the federation directory."""
_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Revocations:
    """The serial numbers one CA has revoked, as of ``issued``."""

    issuer: x509.Name
    serials: frozenset[int]
    issued: datetime
    next_update: datetime | None
    number: int

    def revokes(self, cert: x509.Certificate) -> bool:
        return cert.issuer == self.issuer and cert.serial_number in self.serials


def parse_crl(pem: bytes, cas: Sequence[x509.Certificate], source: str) -> Revocations:
    """The revocations in the PEM CRL ``pem``, which must be signed by one of ``cas``."""
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError:
        raise ConfigError(
            f"{source} is not a PEM certificate revocation list; write it with `accord pki revoke`"
        ) from None
    issuer = next((ca for ca in cas if ca.subject == crl.issuer), None)
    if issuer is None:
        raise ConfigError(
            f"{source} was issued by {crl.issuer.rfc4514_string()}, not by the federation CA; "
            "use the CRL `accord pki revoke` wrote next to your CA"
        )
    public_key = issuer.public_key()
    if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise ConfigError(f"{source}: the CA's key type cannot sign a CRL")
    if not crl.is_signature_valid(public_key):
        raise ConfigError(
            f"{source}: its signature does not verify against the federation CA "
            "(it was altered, or another CA signed it)"
        )
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    return Revocations(
        issuer=crl.issuer,
        serials=frozenset(r.serial_number for r in crl),
        issued=crl.last_update_utc,
        next_update=crl.next_update_utc,
        number=number,
    )


def load_crl(path: Path, cas: Sequence[x509.Certificate]) -> Revocations:
    """Read and check the CRL at ``path`` (see :func:`parse_crl`)."""
    try:
        pem = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"CRL file {path} cannot be read ({err.strerror}); check [tls] crl") from None
    return parse_crl(pem, cas, f"CRL file {path}")


class CrlFile:
    """A CRL file kept current: :meth:`current` re-reads it when its bytes have changed (compared
    by digest, so a rewrite of the same size within one timestamp tick is seen too). Thread-safe.

    At start-up the CRL must verify and must not be past its next update (an old CRL put back
    would bring back everyone revoked since); later versions must verify and must not be older
    (a lower number) than the one in force, or they are logged and ignored."""

    def __init__(self, path: Path, cas: Sequence[x509.Certificate]) -> None:
        self.path = Path(path)
        self._cas = tuple(cas)
        self._lock = threading.Lock()
        self._digest = self._read_digest()
        self._revocations = load_crl(self.path, self._cas)
        stale = self._revocations.next_update
        if stale is not None and stale < datetime.now(UTC):
            raise ConfigError(
                f"CRL file {self.path} passed its next update ({stale:%Y-%m-%d %H:%M} UTC): it may be an "
                "old copy; publish a fresh one with `accord pki crl --dir DIR` and copy it here"
            )
        self._checked = time.monotonic()

    def _read_digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def current(self) -> Revocations:
        """The revocations in force: the file's, reloaded if it changed since it was last read."""
        now = time.monotonic()
        if now - self._checked < _RECHECK_SECONDS:
            return self._revocations
        with self._lock:
            if now - self._checked < _RECHECK_SECONDS:
                return self._revocations
            self._checked = now
            digest = self._read_digest()
            if digest != self._digest:
                self._reload(digest)
            return self._revocations

    def _reload(self, digest: bytes | None) -> None:
        self._digest = digest  # a bad version is reported once, not every second
        try:
            fresh = load_crl(self.path, self._cas)
        except ConfigError as err:
            log.error("%s; the revocation list read earlier stays in force", err.message)
            return
        if fresh.number < self._revocations.number:
            log.error(
                "CRL file %s is older (number %d) than the one in force (%d); keeping the newer one",
                self.path,
                fresh.number,
                self._revocations.number,
            )
            return
        self._revocations = fresh
        log.info("CRL %s reloaded: %d certificate(s) revoked", self.path, len(fresh.serials))
        if fresh.next_update is not None and fresh.next_update < datetime.now(UTC):
            log.warning(
                "CRL %s passed its next update (%s); publish a fresh one", self.path, fresh.next_update
            )

    def revokes(self, cert: x509.Certificate) -> bool:
        return self.current().revokes(cert)
