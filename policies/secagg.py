"""Secure aggregation's cryptography: signed per-query keys, pairwise masks, signed masked shares.

Pairwise masking as in Bonawitz et al. (CCS 2017), without dropout recovery (authorities are few,
fixed and online; a query whose participant fails is failed and retried):

1. For each query the coordinator names the participants. Each node makes a fresh X25519 key
   pair for this query and signs a :class:`KeyShare` (its name, the query id, the SHA-256 of the
   analyst's signed payload, the participants, its public key) with its node certificate's key.
2. Every node checks every other participant's key share: signed by a certificate of the
   federation's CA, of role ``node``, named as the participant it claims to be, for this query and
   this participant set. The *transcript* is the SHA-256 of all key shares' signed messages.
3. For each other participant ``j`` node ``i`` derives a seed
   ``HKDF-SHA256(X25519(sk_i, pk_j), salt = transcript, info = context | query id | both names)``
   and expands it with ChaCha20 (zero nonce, fresh key per pair and query) into one 64-bit word per
   vector entry. The node *adds* the words for ``j`` after it in name order and *subtracts* those
   for ``j`` before it, modulo 2**64; summed over all participants every pair's words cancel.
4. The node signs the masked share (:func:`sign_share`); the coordinator (and the analyst's
   client) check each signature, that every share was masked under the same transcript, and sum.

Only primitives of ``cryptography`` are used: X25519, HKDF-SHA256, ChaCha20, SHA-256 and the
certificates' own signature algorithms. The words of a pair are a pseudorandom function of a
secret only the pair holds, so to anyone else each masked entry is uniform on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accord.errors import InternalError, InvalidQuery, Violation

__all__ = [
    "KEY_CONTEXT",
    "MAX_PARTICIPANTS",
    "SHARE_CONTEXT",
    "KeyShare",
    "SignedShare",
    "check_participants",
    "mask",
    "new_key",
    "pair_words",
    "public_bytes",
    "sign",
    "sign_key",
    "sign_share",
    "sum_masked",
    "transcript",
]

KEY_CONTEXT = b"accord-secagg-key/v1\n"
SHARE_CONTEXT = b"accord-secagg-share/v1\n"
_MASK_INFO = b"accord-secagg-mask/v1"
_TRANSCRIPT = b"accord-secagg-transcript/v1\n"
MAX_PARTICIPANTS = 64
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_MODULUS = 1 << 64

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def check_participants(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a participant set: sorted, distinct node names, from 2 to :data:`MAX_PARTICIPANTS`."""
    out = tuple(names)
    if not 2 <= len(out) <= MAX_PARTICIPANTS:
        raise InvalidQuery(
            f"secure aggregation needs from 2 to {MAX_PARTICIPANTS} participants, not {len(out)}",
            (Violation("participants", "count"),),
        )
    if any(not isinstance(n, str) or not _NAME.fullmatch(n) for n in out):
        raise InvalidQuery("a participant is not a node name", (Violation("participants", "name"),))
    if list(out) != sorted(set(out)):
        raise InvalidQuery(
            "participants must be listed once each, in name order", (Violation("participants", "order"),)
        )
    return out


def _canonical(members: dict[str, object]) -> bytes:
    return json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: SigningKey, message: bytes) -> bytes:
    """``message`` signed with a node certificate's key (ECDSA-SHA256, Ed25519 or RSA PKCS#1 v1.5)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    raise TypeError(f"cannot sign with a {type(key).__name__}")  # pragma: no cover


@dataclass(frozen=True)
class KeyShare:
    """A node's fresh X25519 public key for one query, signed with its node certificate."""

    node: str
    query_id: str
    payload_digest: bytes
    participants: tuple[str, ...]
    public_key: bytes
    certificate: bytes
    signature: bytes = b""

    def message(self) -> bytes:
        """What the node signs: the context line, then the canonical JSON of every member but the
        certificate and the signature."""
        return KEY_CONTEXT + _canonical(
            {
                "node": self.node,
                "query_id": self.query_id,
                "payload": self.payload_digest.hex(),
                "participants": list(self.participants),
                "public_key": self.public_key.hex(),
            }
        )

    def key_digest(self) -> str:
        """SHA-256 (hex) of the public key: what the audit log records."""
        return hashlib.sha256(self.public_key).hexdigest()


def new_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def transcript(shares: Sequence[KeyShare]) -> bytes:
    """SHA-256 over every key share's signed message, in participant order."""
    digest = hashlib.sha256(_TRANSCRIPT)
    for share in sorted(shares, key=lambda s: s.node):
        digest.update(hashlib.sha256(share.message()).digest())
    return digest.digest()


def _words(seed: bytes, length: int) -> tuple[int, ...]:
    stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor().update(b"\0" * (8 * length))
    return struct.unpack(f"<{length}Q", stream)


def _field(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def pair_words(
    key: X25519PrivateKey, own: str, peer: KeyShare, query_id: str, script: bytes, length: int
) -> tuple[int, ...]:
    """The ``length`` mask words node ``own`` shares with ``peer`` for this query and transcript."""
    try:
        secret = key.exchange(X25519PublicKey.from_public_bytes(peer.public_key))
    except ValueError:  # a low-order point gives the all-zero secret, which cryptography refuses
        raise InternalError(f"participant {peer.node} sent an unusable X25519 key") from None
    low, high = sorted((own, peer.node))
    info = _MASK_INFO + _field(query_id) + _field(low) + _field(high)
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=script, info=info).derive(secret)
    return _words(seed, length)


def mask(
    values: Sequence[int],
    key: X25519PrivateKey,
    own: str,
    shares: Sequence[KeyShare],
    query_id: str,
    script: bytes,
) -> tuple[int, ...]:
    """``values`` (signed 64-bit) plus node ``own``'s pairwise masks with every other share, mod 2**64."""
    out = [v % _MODULUS for v in values]
    for peer in shares:
        if peer.node == own:
            continue
        words = pair_words(key, own, peer, query_id, script, len(out))
        if own < peer.node:
            out = [(v + w) % _MODULUS for v, w in zip(out, words, strict=True)]
        else:
            out = [(v - w) % _MODULUS for v, w in zip(out, words, strict=True)]
    return tuple(out)


def sum_masked(vectors: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The sum of masked vectors modulo 2**64, read as signed 64-bit integers."""
    if not vectors:
        raise InternalError("nothing to sum")
    length = len(vectors[0])
    if any(len(v) != length for v in vectors):
        raise InternalError("masked vectors of different lengths cannot be summed")
    total = [sum(column) % _MODULUS for column in zip(*vectors, strict=True)]
    return tuple(t - _MODULUS if t >= 1 << 63 else t for t in total)


@dataclass(frozen=True)
class SignedShare:
    """A node's masked share (canonical bytes of :class:`accord.query.share.Share`), signed with its
    node certificate's key."""

    body: bytes
    certificate: bytes
    signature: bytes

    def message(self) -> bytes:
        return SHARE_CONTEXT + self.body


def sign_share(key: SigningKey, certificate_der: bytes, body: bytes) -> SignedShare:
    return SignedShare(body, certificate_der, sign(key, SHARE_CONTEXT + body))


def sign_key(key: SigningKey, unsigned: KeyShare) -> KeyShare:
    return replace(unsigned, signature=sign(key, unsigned.message()))
