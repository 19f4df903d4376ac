"""Signed notes, checkpoints and cosignatures: the C2SP text formats transparency logs and witnesses speak.

A log publishes its tree head (:mod:`accord.policies.merkle`) as a *checkpoint*, a *signed note*;
witnesses that checked that the log only grew by appending add their *cosignatures* to it. Anyone
holding the log's and the witnesses' verifier keys can then check one small text. The formats are
C2SP's, so the tools that speak them (Go's ``golang.org/x/mod/sumdb/note``, transparency-dev,
Sigsum) read ours:

- a **signed note** (c2sp.org/signed-note) is a text ending in a newline, a blank line, and one or
  more signature lines ``— <key name> <base64(4-byte key ID || signature)>`` (an em dash, U+2014,
  and a space first). The whole note is UTF-8 with no control character but the newline; the text
  may hold blank lines of its own, the signatures start after the last one. A key is known by its
  name *and* key ID, ``SHA-256(name || "\\n" || type byte || public key)[:4]``; lines from other
  keys are kept and ignored, but a line from a known key must verify, or the note is refused;
- signature type ``0x01`` (:data:`ALG_ED25519`) is Ed25519 over the note text exactly;
- a **checkpoint** (c2sp.org/tlog-checkpoint) is a note whose text is the log's origin, the tree
  size in decimal (no leading zeros), the base64 root hash (32 bytes) and optional non-empty
  extension lines;
- a **cosignature/v1** (c2sp.org/tlog-cosignature, type ``0x04``, :data:`ALG_COSIGNATURE`) is
  Ed25519 over ``"cosignature/v1\\ntime <t>\\n"`` followed by the checkpoint text, and its line holds
  ``key ID || t (8 bytes, big-endian) || signature (64 bytes)``; ``t`` is a POSIX time below 2^63;
- a **vkey** (verifier key) is ``<name>+<hex key ID>+<base64(type byte || public key)>``.

Only Ed25519 is spoken, by ``cryptography``; nothing here is new cryptography. Every parse or
verification failure is a :class:`NoteError` saying what did not match; parsing is strict (one
encoding of every value: canonical base64, lowercase hex, decimal without leading zeros), so a text
that parses has exactly one meaning. Notes are limited to :data:`MAX_NOTE_SIZE` bytes and
:data:`MAX_SIGNATURES` signature lines (the spec asks verifiers to accept at least 16).

The private keys' files are :mod:`accord.policies.note_keys`'s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALG_COSIGNATURE",
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Signature",
    "SignedNote",
    "key_id",
    "open_note",
    "parse_note",
]

ALG_ED25519 = 0x01
"""Signature type of an Ed25519 signature over the note text (c2sp.org/signed-note)."""
ALG_COSIGNATURE = 0x04
"""Signature type of a timestamped Ed25519 checkpoint cosignature (c2sp.org/tlog-cosignature)."""

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (as Go's ``note.Open``; the spec's floor is 16)."""
MAX_NOTE_SIZE = 1 << 20
"""Most bytes (UTF-8) a whole signed note may have."""

_DASH = "\u2014 "
_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
_HASH_SIZE = 32
_MAX_INT63 = (1 << 63) - 1
_ALG_NAMES = {
    ALG_ED25519: "Ed25519",
    0x02: "ECDSA",
    ALG_COSIGNATURE: "Ed25519 cosignature/v1",
    0x05: "RFC 6962 tree head signature",
    0x06: "ML-DSA-44 cosignature",
}
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note, checkpoint, key or signature is malformed or does not verify (the message says what)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Decode standard base64 with padding, accepting only the one canonical encoding of the bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64: {text[:60]!r}") from None
    if _b64(raw) != text:
        raise NoteError(f"{what} is not in canonical base64 (padding or trailing bits): {text[:60]!r}")
    return raw


def _check_text(text: str, what: str) -> bytes:
    """``text`` as UTF-8; :class:`NoteError` if it cannot be encoded or holds a control character."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise NoteError(f"{what} is not valid Unicode (a lone surrogate at offset {err.start})") from None
    bad = _CONTROL.search(text)
    if bad:
        raise NoteError(
            f"{what} holds the control character U+{ord(bad.group()):04X} at offset {bad.start()}"
            " (only the newline is allowed)"
        )
    return raw


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise NoteError("a key name must be a non-empty string")
    if "+" in name:
        raise NoteError(f"key name {name!r} contains '+'")
    for c in name:
        if c.isspace() or ord(c) < 0x20:
            raise NoteError(f"key name {name!r} contains a space or control character (U+{ord(c):04X})")
    _check_text(name, f"key name {name!r}")


def _check_body(body: str) -> bytes:
    if not isinstance(body, str):
        raise NoteError(f"a note's text is a str, not {type(body).__name__}")
    if not body.endswith("\n"):
        raise NoteError(f"a note's text must end with a newline: {body[-40:]!r}")
    raw = _check_text(body, "the note's text")
    if len(raw) > MAX_NOTE_SIZE:
        raise NoteError(f"the note's text is {len(raw)} bytes, more than the {MAX_NOTE_SIZE} allowed")
    return raw


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= _MAX_INT63:
        raise NoteError(f"a cosignature time is a POSIX time from 0 to 2^63-1, not {timestamp!r}")


def _alg_name(alg: int) -> str:
    return f"0x{alg:02x} ({_ALG_NAMES.get(alg, 'unassigned')})"


def _cosignature_message(timestamp: int, body: str) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def key_id(name: str, alg: int, public_key_bytes: bytes) -> bytes:
    """The 4-byte key ID of a key: ``SHA-256(name || "\\n" || alg || public key)[:4]``."""
    _check_name(name)
    if not 0 <= alg <= 0xFF:
        raise NoteError(f"a signature type is one byte, not {alg}")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key_bytes).digest()[
        :_KEY_ID_SIZE
    ]


@dataclass(frozen=True)
class Signature:
    """One signature line of a note, verified or not: the key's name and ID, and the signature bytes
    (for :data:`ALG_COSIGNATURE`, the 8-byte big-endian time and the 64-byte signature)."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != _KEY_ID_SIZE:
            raise NoteError(f"a key ID is {_KEY_ID_SIZE} bytes, not {self.key_id!r}")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise NoteError(f"the signature of {self.name} is empty")

    def line(self) -> str:
        """``— <name> <base64(key ID || signature)>`` and a newline."""
        return f"{_DASH}{self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class SignedNote:
    """A note's text (ending in a newline; it may hold blank lines) and its signatures, in order.

    A note may be built without signatures and signed with :meth:`with_signature`; only a signed
    note has a :meth:`text`."""

    body: str
    signatures: tuple[Signature, ...] = ()

    def __post_init__(self) -> None:
        _check_body(self.body)
        object.__setattr__(self, "signatures", tuple(self.signatures))
        if len(self.signatures) > MAX_SIGNATURES:
            raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures, not {len(self.signatures)}")

    def text(self) -> str:
        """The signed note: the text, a blank line and the signature lines."""
        if not self.signatures:
            raise NoteError("a note without signatures has no signed form: add a signature first")
        text = self.body + "\n" + "".join(s.line() for s in self.signatures)
        if len(text.encode("utf-8")) > MAX_NOTE_SIZE:
            raise NoteError(f"the signed note would be more than the {MAX_NOTE_SIZE} bytes allowed")
        return text

    def with_signature(self, sig: Signature) -> SignedNote:
        """This note with ``sig`` added last, in place of any signature with its name and key ID."""
        keep = tuple(s for s in self.signatures if (s.name, s.key_id) != (sig.name, sig.key_id))
        return SignedNote(self.body, (*keep, sig))


def _parse_line(line: str, number: int) -> Signature:
    if not line.startswith(_DASH):
        raise NoteError(
            f"signature line {number} does not start with an em dash (U+2014) and a space: {line[:40]!r}"
        )
    name, sep, encoded = line[len(_DASH) :].partition(" ")
    if not sep:
        raise NoteError(f"signature line {number} has no space between the key name and the signature")
    _check_name(name)
    raw = _b64decode(encoded, f"the signature on line {number}")
    if len(raw) <= _KEY_ID_SIZE:
        raise NoteError(
            f"the signature on line {number} is {len(raw)} bytes: a key ID and a signature need more"
        )
    return Signature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def parse_note(text: str | bytes) -> SignedNote:
    """The text and signature lines of a signed note, checked strictly against the signed-note
    format (nothing is verified here: see :meth:`NoteVerifier.verify` and :func:`open_note`).
    ``bytes`` must be UTF-8."""
    if isinstance(text, bytes):
        if len(text) > MAX_NOTE_SIZE:
            raise NoteError(f"the note is {len(text)} bytes, more than the {MAX_NOTE_SIZE} allowed")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise NoteError(f"the note is not valid UTF-8 (at byte {err.start})") from None
    raw = _check_text(text, "the note")
    if len(raw) > MAX_NOTE_SIZE:
        raise NoteError(f"the note is {len(raw)} bytes, more than the {MAX_NOTE_SIZE} allowed")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line between its text and its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise NoteError("the note has no signature lines after its blank line")
    if not block.endswith("\n"):
        raise NoteError("the note's last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signature lines, more than the {MAX_SIGNATURES} allowed")
    return SignedNote(body, tuple(_parse_line(line, i) for i, line in enumerate(lines, 1)))


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head as a checkpoint's text: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for what, line in (("origin", self.origin), *(("extension line", e) for e in self.extensions)):
            if not isinstance(line, str) or not line or "\n" in line:
                raise NoteError(f"a checkpoint's {what} is one non-empty line, not {line!r}")
            _check_text(line, f"the checkpoint's {what}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= _MAX_INT63:
            raise NoteError(f"a tree size is from 0 to 2^63-1, not {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_SIZE:
            raise NoteError(f"a root hash is {_HASH_SIZE} bytes, not {self.root!r}")

    def body(self) -> str:
        """``origin\\nsize\\nbase64(root)\\n`` and the extension lines: the text to sign."""
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), _b64(self.root), *self.extensions)
        )

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """The checkpoint a note's text states (strict: one spelling of each value)."""
        _check_body(body)
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(
                f"a checkpoint has at least 3 lines (origin, tree size, root hash), this has {len(lines)}"
            )
        for number, line in enumerate(lines, 1):
            if not line:
                raise NoteError(f"line {number} of the checkpoint is empty")
        origin, size, root = lines[:3]
        if not _DECIMAL.fullmatch(size):
            if re.fullmatch(r"0[0-9]+", size):
                raise NoteError(f"the tree size {size!r} has a leading zero")
            raise NoteError(f"the tree size {size[:40]!r} is not a non-negative decimal number")
        if len(size) > 19 or int(size) > _MAX_INT63:
            raise NoteError(f"the tree size {size[:40]} is larger than 2^63-1")
        root_hash = _b64decode(root, "the root hash")
        if len(root_hash) != _HASH_SIZE:
            raise NoteError(f"the root hash is {len(root_hash)} bytes, not {_HASH_SIZE}")
        return cls(origin, int(size), root_hash, tuple(lines[3:]))


@dataclass(frozen=True)
class NoteVerifier:
    """One Ed25519 public key, its name and signature type (:data:`ALG_ED25519` for note signatures,
    :data:`ALG_COSIGNATURE` for cosignatures): checks the lines of a note made by that key."""

    name: str
    public_key: bytes
    alg: int = ALG_ED25519
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.alg not in (ALG_ED25519, ALG_COSIGNATURE):
            raise NoteError(
                f"signature type {_alg_name(self.alg)} is not supported: only 0x01 (Ed25519) and"
                " 0x04 (Ed25519 cosignature/v1)"
            )
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _ED25519_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key is {_ED25519_KEY_SIZE} bytes, not {len(self.public_key)}")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise NoteError(f"{self.public_key.hex()} is not an Ed25519 public key") from None
        object.__setattr__(self, "key_id", key_id(self.name, self.alg, self.public_key))
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """The verifier a vkey ``<name>+<hex key ID>+<base64(type || public key)>`` describes."""
        try:
            return cls._from_vkey(vkey)
        except NoteError as err:
            raise NoteError(f"vkey {str(vkey)[:120]!r}: {err}") from None

    @classmethod
    def _from_vkey(cls, vkey: str) -> NoteVerifier:
        if not isinstance(vkey, str):
            raise NoteError(f"a vkey is a str, not {type(vkey).__name__}")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise NoteError("a vkey is <name>+<hex key ID>+<base64 key>: it has too few '+'")
        name, hex_id, encoded = parts
        _check_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise NoteError(f"the key ID {hex_id[:20]!r} is not 8 lowercase hexadecimal digits")
        data = _b64decode(encoded, "the key")
        if not data:
            raise NoteError("the key is empty")
        alg, public_key = data[0], data[1:]
        if alg not in (ALG_ED25519, ALG_COSIGNATURE):
            raise NoteError(
                f"signature type {_alg_name(alg)} is not supported: only 0x01 (Ed25519) and"
                " 0x04 (Ed25519 cosignature/v1)"
            )
        verifier = cls(name, public_key, alg)
        if verifier.key_id.hex() != hex_id:
            raise NoteError(
                f"the key ID {hex_id} does not match the name, type and key"
                f" (they give {verifier.key_id.hex()})"
            )
        return verifier

    def vkey(self) -> str:
        """``<name>+<hex key ID>+<base64(type || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.alg]) + self.public_key)}"

    def _label(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"

    def verify(self, note: SignedNote) -> Signature | None:
        """The first signature line of this key (same name and key ID) in ``note``, every one of
        which verified; ``None`` if the note has no line of this key. :class:`NoteError` if a line
        of this key does not verify."""
        found: Signature | None = None
        for sig in note.signatures:
            if sig.name == self.name and sig.key_id == self.key_id:
                self._check(note.body, sig)
                if found is None:
                    found = sig
        return found

    def _check(self, body: str, sig: Signature) -> None:
        if self.alg == ALG_COSIGNATURE:
            message = _cosignature_message(self.cosignature_time(sig), body)
            raw = sig.signature[_TIMESTAMP_SIZE:]
        else:
            if len(sig.signature) != _ED25519_SIG_SIZE:
                raise NoteError(
                    f"the signature of key {self._label()} is {len(sig.signature)} bytes,"
                    f" not {_ED25519_SIG_SIZE}"
                )
            message, raw = body.encode("utf-8"), sig.signature
        try:
            self._key.verify(raw, message)
        except InvalidSignature:
            raise NoteError(
                f"the signature of key {self._label()} does not verify over the note's text"
            ) from None

    def cosignature_time(self, sig: Signature) -> int:
        """The time a cosignature of this (:data:`ALG_COSIGNATURE`) key states. Not a verification:
        read it from a signature :meth:`verify` returned."""
        if self.alg != ALG_COSIGNATURE:
            raise NoteError(f"key {self._label()} makes note signatures (type 0x01): they state no time")
        if (sig.name, sig.key_id) != (self.name, self.key_id):
            raise NoteError(f"the signature is from key {sig.name}+{sig.key_id.hex()}, not {self._label()}")
        size = _TIMESTAMP_SIZE + _ED25519_SIG_SIZE
        if len(sig.signature) != size:
            raise NoteError(
                f"the cosignature of key {self._label()} is {len(sig.signature)} bytes, not {size}"
                " (an 8-byte time and a 64-byte signature)"
            )
        timestamp = int.from_bytes(sig.signature[:_TIMESTAMP_SIZE], "big")
        if timestamp > _MAX_INT63:
            raise NoteError(f"the cosignature of key {self._label()} states a time beyond 2^63-1")
        return timestamp


class NoteSigner:
    """Signs notes (:data:`ALG_ED25519`) and cosigns checkpoints (:data:`ALG_COSIGNATURE`) with one
    Ed25519 key. (Use one key per role: a cosignature does not name its cosigner.)"""

    __slots__ = ("_key", "_public", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError(f"a NoteSigner needs an Ed25519 private key, not {type(private_key).__name__}")
        self.name = name
        self._key = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def __repr__(self) -> str:
        return f"NoteSigner({self.vkey()!r})"

    def verifier(self, alg: int = ALG_ED25519) -> NoteVerifier:
        """The verifier of this key's signatures of type ``alg``."""
        return NoteVerifier(self.name, self._public, alg)

    def vkey(self, alg: int = ALG_ED25519) -> str:
        """The vkey of this key for signatures of type ``alg``."""
        return self.verifier(alg).vkey()

    def sign(self, body: str) -> Signature:
        """An Ed25519 signed-note signature of the note text ``body``."""
        message = _check_body(body)
        return Signature(self.name, key_id(self.name, ALG_ED25519, self._public), self._key.sign(message))

    def cosign(self, checkpoint_body: str, timestamp: int) -> Signature:
        """A cosignature/v1 of the checkpoint text ``checkpoint_body`` at POSIX time ``timestamp``
        (the text must be a valid checkpoint)."""
        Checkpoint.parse(checkpoint_body)
        _check_timestamp(timestamp)
        signature = self._key.sign(_cosignature_message(timestamp, checkpoint_body))
        return Signature(
            self.name,
            key_id(self.name, ALG_COSIGNATURE, self._public),
            timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + signature,
        )


def open_note(
    note: SignedNote, verifiers: Sequence[NoteVerifier], *, required: int = 1
) -> list[NoteVerifier]:
    """The ``verifiers`` whose key signed ``note`` (a signature line of theirs that verifies), in
    their order. :class:`NoteError` if a line of one of them does not verify, if two of them are
    the same key (name and key ID), or if fewer than ``required`` signed (the spec rejects a note no
    known key signed; ``required=0`` only counts)."""
    seen: set[tuple[str, bytes]] = set()
    for v in verifiers:
        if (v.name, v.key_id) in seen:
            raise NoteError(f"key {v.name}+{v.key_id.hex()} is listed twice among the verifiers")
        seen.add((v.name, v.key_id))
    signed = [v for v in verifiers if v.verify(note) is not None]
    if len(signed) < required:
        lines = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures) or "none"
        raise NoteError(
            f"{len(signed)} of the {len(verifiers)} known keys signed the note, {required} needed"
            f" (its signatures are from {lines})"
        )
    return signed
