"""The Ed25519 private keys that sign a node's checkpoints and cosignatures: PEM (unencrypted
PKCS#8) files of mode 0600. :func:`write_private_key` creates one atomically and never overwrites,
:func:`load_private_key` refuses a file others can read."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.policies.note import NoteError

__all__ = ["generate_key", "load_private_key", "write_private_key"]


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` to a new file ``path`` (PEM, unencrypted PKCS#8, mode 0600), all or nothing:
    written and synced under a temporary name in the same folder, then linked into place, which
    fails if ``path`` exists (:class:`NoteError`: a key is never overwritten)."""
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"write_private_key writes Ed25519 keys, not {type(key).__name__}")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if path.exists():
        raise NoteError(f"{path} already exists: a private key is never overwritten (move it away first)")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except FileNotFoundError:
        raise NoteError(f"cannot write {path}: the folder {path.parent} does not exist") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise NoteError(
                f"{path} already exists: a private key is never overwritten (move it away first)"
            ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``, which only its owner may read (mode 0600
    or 0400). :class:`NoteError` if it is missing, readable by others, not PEM or not Ed25519."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NoteError(f"{path} is not a regular file")
            if os.name == "posix" and st.st_mode & 0o077:
                raise NoteError(
                    f"{path} can be read or written by others (mode {stat.S_IMODE(st.st_mode):04o}):"
                    f" run `chmod 600 {path}`"
                )
            data = f.read(64 * 1024 + 1)
    except FileNotFoundError:
        raise NoteError(f"no private key at {path}: the file does not exist") from None
    except IsADirectoryError:
        raise NoteError(f"{path} is a folder, not a private key file") from None
    except PermissionError:
        raise NoteError(f"cannot read the private key {path}: permission denied") from None
    if len(data) > 64 * 1024 or b"-----BEGIN " not in data:
        raise NoteError(f"{path} is not a PEM file (no -----BEGIN line)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise NoteError(f"{path} is encrypted: a note key is stored unencrypted, mode 0600") from None
    except (ValueError, UnsupportedAlgorithm):
        raise NoteError(f"{path} does not hold a valid PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NoteError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key
