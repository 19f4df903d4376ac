"""Signed notes, checkpoints and cosignatures (:mod:`accord.policies.note`) against the published
vectors of the C2SP specifications, Go's ``golang.org/x/mod/sumdb/note``, Sigsum and transparency-dev,
and sign / verify round trips, tampering, and the private key files.

Vector sources (copied verbatim; a long signature line is split after its key name, into two
string literals that Python joins back):

- ``GO``: golang/mod ``sumdb/note/note_test.go`` (commit 02c991387e35f9e4c0a9b7ce137717055f8d716d);
- ``C2SP``: C2SP/C2SP ``signed-note.md``, ``tlog-checkpoint.md``, ``tlog-cosignature.md``
  (commit 5ba5ee830903e91240fc6f9f3a7a9293d49e69c9);
- ``SIGSUM``: sigsum/sigsum-go ``pkg/checkpoint/checkpoint_test.go``
  (commit 2224a397c849d2dd7bf412f9675f9e323381693c): a log signature and a cosignature/v1 made with
  the private key ``crypto.PrivateKey{17}`` (the seed 0x11 and 31 zero bytes), and a checkpoint of
  sum.golang.org retrieved there on 2024-09-23 with the Go checksum database's public key;
- ``TDEV``: transparency-dev/formats ``note/note_cosigv1_test.go``
  (commit 091ce41666c09683aa9350785e572be27f0c026d): vkeys of type 0x01 and 0x04.
"""

from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.policies.note import (
    ALG_COSIGNATURE,
    ALG_ED25519,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    Signature,
    SignedNote,
    key_id,
    open_note,
    parse_note,
)
from accord.policies.note_keys import generate_key, load_private_key, write_private_key

# GO: TestNewVerifier, TestNewSigner, TestSign, TestOpen.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)

# C2SP signed-note.md, "Verifier keys / Example", and the note the document opens with.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
QUASIMODO_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
# C2SP tlog-cosignature.md: a checkpoint with a log signature and a witness cosignature.
SPEC_COSIGNED = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 "
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)

# SIGSUM: TestCheckpointSigned / TestCheckpointVerify (log signature, key crypto.PrivateKey{17}).
SIGSUM_SEED = bytes([17]) + bytes(31)
SIGSUM_CHECKPOINT = (
    "sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69\n"
    "10\n"
    "HA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    "\n"
    "— sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69 "
    "gJ2ho0n8F8olcerUF1FFdv235A/5as/coWrpLrtE7ovMeP5whgwouYExowG/lTznxu6OUGjjt5yJQ6bXtTcf718MqAQ=\n"
)
# SIGSUM: TestCheckpointCosignVerify / TestCheckpointVerifyCosignatureByKey: the cosignature/v1 of
# testCheckpoint (origin example.org/log, size 10, root HA5H...) at time 1234, same key.
SIGSUM_COSIGNED_BODY = "example.org/log\n10\nHA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
SIGSUM_COSIGNATURE = (
    "— example.org/witness "
    "ys8uUAAAAAAAAATSftMzceM8zssdZ9jin9SjwIxzx9iADMf63VqirX2hafol9RsqNqbofIz0LVRqHXI2kpEBSki5RTXFtxz1vo9+Cg==\n"
)
# SIGSUM: TestGoSumDBCheckpoint (a real checkpoint of the Go checksum database and its key).
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "30055305\n"
    "mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n"
    "\n"
    "— sum.golang.org "
    "Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucFcAAlWFJJYle3EJlDCrQ+y3A8=\n"
)

# TDEV: TestCoSigV1NewVerifier (a type 0x01 and a type 0x04 vkey).
TDEV_VKEY_ED25519 = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
TDEV_VKEY_COSIGNATURE = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"

ROOT = bytes(range(32))


def _go_skey(skey: str) -> Ed25519PrivateKey:
    """The key of a Go ``PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed)`` signer key."""
    data = base64.b64decode(skey.split("+", 4)[4])
    assert data[0] == ALG_ED25519
    return Ed25519PrivateKey.from_private_bytes(data[1:])


def _sigsum_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SIGSUM_SEED)


# --- published vectors ----------------------------------------------------------------------------


def test_go_signer_reproduces_the_published_signature() -> None:
    """Property: signing Go's example text with Go's example key gives Go's signature line byte for
    byte, and the note's key ID is the published one (Ed25519 is deterministic)."""
    signer = NoteSigner("PeterNeumann", _go_skey(PETER_SKEY))
    sig = signer.sign(PETER_TEXT)
    assert sig.line() == PETER_SIG
    assert SignedNote(PETER_TEXT, (sig,)).text() == PETER_TEXT + "\n" + PETER_SIG
    assert signer.vkey() == PETER_VKEY
    assert key_id("PeterNeumann", ALG_ED25519, signer.verifier().public_key).hex() == "c74f20a3"


def test_go_open_vectors() -> None:
    """Property: as Go's TestOpen: with Peter's key only, Peter's line verifies and Enoch's is kept
    but ignored; with both keys both verify; with no key the note is refused."""
    peter, enoch = NoteVerifier.from_vkey(PETER_VKEY), NoteVerifier.from_vkey(ENOCH_VKEY)
    note = parse_note(PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert note.body == PETER_TEXT
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert open_note(note, [peter]) == [peter]
    assert open_note(note, [peter, enoch]) == [peter, enoch]
    assert peter.verify(note) == note.signatures[0] and enoch.verify(note) == note.signatures[1]
    with pytest.raises(NoteError, match="0 of the 0 known keys signed the note"):
        open_note(note, [])
    assert open_note(note, [], required=0) == []


def test_go_open_refuses_a_bad_signature_of_a_known_key() -> None:
    """Property: as Go's TestOpen, a line of a known key that does not verify makes the note fail,
    while corrupted lines of unknown keys are kept and ignored."""
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match=r"signature of key PeterNeumann\+c74f20a3 is 67 bytes"):
        open_note(parse_note(PETER_TEXT + "\n" + bad), [peter])
    enoch_bad = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    text = PETER_TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_bad
    assert open_note(parse_note(text), [peter]) == [peter]


@pytest.mark.parametrize(
    "text",
    [
        PETER_TEXT,
        PETER_TEXT + "\n",
        PETER_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + PETER_TEXT + "\n" + PETER_SIG,
        b"\xff" + (PETER_TEXT + "\n" + PETER_SIG).encode(),
        PETER_TEXT + "\n" + "— Bad Name "
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        PETER_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        PETER_TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1),
    ],
    ids=["no-sigs", "blank-only", "no-final-newline", "control", "not-utf8", "bad-name", "extra", "101"],
)
def test_go_malformed_notes(text: str | bytes) -> None:
    """Property: every note Go's TestOpen calls malformed fails to parse here."""
    with pytest.raises(NoteError):
        parse_note(text)


def test_go_vkey_manglings_are_refused() -> None:
    """Property: as Go's TestNewVerifier: the vkey parses, and every proper substring of it, every
    one-byte increment of it, a key of the wrong length and an unknown type are refused."""
    assert NoteVerifier.from_vkey(PETER_VKEY).vkey() == PETER_VKEY
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(NoteError):
                    NoteVerifier.from_vkey(b[i:j])
    for i in range(len(b)):
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])
    with pytest.raises(NoteError, match="vkey"):
        NoteVerifier.from_vkey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(NoteError, match="32 bytes, not 31"):
        NoteVerifier.from_vkey("PeterNeumann+00000000+" + base64.b64encode(b"\x01" + bytes(31)).decode())
    with pytest.raises(NoteError, match="0x65"):
        NoteVerifier.from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_spec_signed_note_example() -> None:
    """Property: the signed-note specification's example vkey verifies its example note."""
    v = NoteVerifier.from_vkey(SPEC_VKEY)
    assert (v.name, v.key_id.hex(), v.alg) == ("example.com/foo", "530d903a", ALG_ED25519)
    note = parse_note(SPEC_NOTE)
    assert note.body == "This is an example message.\n"
    assert open_note(note, [v]) == [v]
    assert note.text() == SPEC_NOTE


def test_spec_note_text_may_hold_blank_lines() -> None:
    """Property: the text of a note may hold blank lines; the signatures start after the last one
    (the specification's opening example), and the note prints back as it was read."""
    note = parse_note(QUASIMODO_NOTE)
    assert note.body == (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    )
    assert [(s.name, len(s.signature)) for s in note.signatures] == [("quasimodo.example/salvatore", 64)]
    assert note.text() == QUASIMODO_NOTE


def test_spec_cosigned_checkpoint_example() -> None:
    """Property: the tlog-cosignature example parses: a checkpoint of the stated size and origin, a
    log signature and a cosignature whose time is the 1679315147 the specification signs."""
    note = parse_note(SPEC_COSIGNED)
    cp = Checkpoint.parse(note.body)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.body() == note.body
    log, witness = note.signatures
    assert (log.key_id.hex(), len(log.signature)) == ("033de0ae", 64)
    assert (witness.key_id.hex(), len(witness.signature)) == ("8d66cf3f", 72)
    assert int.from_bytes(witness.signature[:8], "big") == 1679315147
    assert note.text() == SPEC_COSIGNED


def test_sumdb_checkpoint_verifies() -> None:
    """Property: a real checkpoint of the Go checksum database parses into its origin, size and
    root, prints back byte for byte, and verifies under the database's published key."""
    v = NoteVerifier.from_vkey(SUMDB_VKEY)
    note = parse_note(SUMDB_CHECKPOINT)
    cp = Checkpoint.parse(note.body)
    assert (cp.origin, cp.size) == ("go.sum database tree", 30055305)
    assert cp.root == base64.b64decode("mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=")
    assert cp.body() == note.body
    assert open_note(note, [v]) == [v]


def test_sigsum_log_signature_is_reproduced() -> None:
    """Property: Sigsum's signed checkpoint verifies, and signing its text with its key (the seed
    0x11, 0, ..., 0) under its name gives its signature line byte for byte."""
    note = parse_note(SIGSUM_CHECKPOINT)
    name = note.signatures[0].name
    signer = NoteSigner(name, _sigsum_key())
    assert open_note(note, [signer.verifier()]) == [signer.verifier()]
    assert signer.sign(note.body) == note.signatures[0]


def test_sigsum_cosignature_vector() -> None:
    """Property: Sigsum's cosignature/v1 line verifies under its key as type 0x04, states time 1234,
    and cosigning the same checkpoint at 1234 reproduces it byte for byte."""
    signer = NoteSigner("example.org/witness", _sigsum_key())
    witness = NoteVerifier.from_vkey(signer.vkey(ALG_COSIGNATURE))
    assert witness.alg == ALG_COSIGNATURE and witness.key_id.hex() == "cacf2e50"
    note = parse_note(SIGSUM_COSIGNED_BODY + "\n" + SIGSUM_COSIGNATURE)
    sig = witness.verify(note)
    assert sig is not None and witness.cosignature_time(sig) == 1234
    assert signer.cosign(SIGSUM_COSIGNED_BODY, 1234).line() == SIGSUM_COSIGNATURE
    assert signer.verifier(ALG_ED25519).verify(note) is None


def test_tdev_vkeys_parse_and_print_back() -> None:
    """Property: transparency-dev's vkeys of type 0x01 and 0x04 parse with their types and print back
    unchanged; their malformed ones (too few parts, bad base64, unknown type, bad key ID) do not."""
    for vkey, alg in ((TDEV_VKEY_ED25519, ALG_ED25519), (TDEV_VKEY_COSIGNATURE, ALG_COSIGNATURE)):
        v = NoteVerifier.from_vkey(vkey)
        assert v.alg == alg and v.vkey() == vkey
    material = TDEV_VKEY_ED25519.split("+", 2)[2]
    for bad in (
        "bananas.sigstore.dev+12344556",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        "rekor.sigstore.dev+12345678+AwEB",
        "rekor.sigstore.dev+NOT_A_NUMBER+" + material,
        "rekor.sigstore.dev+00000000+" + material,
    ):
        with pytest.raises(NoteError, match="vkey"):
            NoteVerifier.from_vkey(bad)


# --- round trips ----------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    """Property: a note signed by a fresh key verifies under its vkey, parses back to the same note,
    and survives another key's signature being added."""
    a, b = NoteSigner("example.org/a", generate_key()), NoteSigner("example.org/b", generate_key())
    body = "first line\n\nafter a blank line\n"
    note = SignedNote(body).with_signature(a.sign(body))
    both = note.with_signature(b.sign(body))
    assert parse_note(note.text()) == note and parse_note(both.text()) == both
    va, vb = NoteVerifier.from_vkey(a.vkey()), NoteVerifier.from_vkey(b.vkey())
    assert open_note(note, [va, vb]) == [va]
    assert open_note(both, [vb, va]) == [vb, va]


def test_with_signature_replaces_the_same_key() -> None:
    """Property: a new signature takes the place of any of the same name and key ID (Go's Sign)
    and goes last; others stay in order."""
    signer = NoteSigner("PeterNeumann", _go_skey(PETER_SKEY))
    stale = Signature("PeterNeumann", bytes.fromhex("c74f20a3"), b"stale")
    enoch = parse_note(PETER_TEXT + "\n" + ENOCH_SIG).signatures[0]
    note = SignedNote(PETER_TEXT, (stale, enoch)).with_signature(signer.sign(PETER_TEXT))
    assert note.text() == PETER_TEXT + "\n" + ENOCH_SIG + PETER_SIG


def test_a_body_ending_in_a_blank_line_round_trips() -> None:
    """Property: a text that itself ends with an empty line signs, prints and parses back as itself."""
    signer = NoteSigner("n", generate_key())
    note = SignedNote("Note\n\n").with_signature(signer.sign("Note\n\n"))
    assert parse_note(note.text()).body == "Note\n\n"
    assert open_note(parse_note(note.text()), [signer.verifier()])


def test_cosignature_round_trip() -> None:
    """Property: a checkpoint signed by its log and cosigned by a witness verifies under both, and
    the witness's time reads back, for times 0, now and 2^63-1."""
    log, wit = NoteSigner("example.org/log", generate_key()), NoteSigner("example.org/w", generate_key())
    body = Checkpoint("example.org/log", 7, ROOT, ("ext one",)).body()
    witness = NoteVerifier.from_vkey(wit.vkey(ALG_COSIGNATURE))
    for t in (0, int(time.time()), (1 << 63) - 1):
        note = SignedNote(body, (log.sign(body), wit.cosign(body, t)))
        note = parse_note(note.text())
        assert open_note(note, [log.verifier(), witness], required=2) == [log.verifier(), witness]
        sig = witness.verify(note)
        assert sig is not None and witness.cosignature_time(sig) == t


def test_cosignature_covers_time_and_extension_lines() -> None:
    """Property: a cosignature moved to another time, or to the checkpoint with an extension line
    changed, does not verify."""
    wit = NoteSigner("example.org/w", generate_key())
    body = Checkpoint("o", 1, ROOT, ("Extendo",)).body()
    sig = wit.cosign(body, 100)
    moved = Signature(sig.name, sig.key_id, (101).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(NoteError, match="does not verify"):
        wit.verifier(ALG_COSIGNATURE).verify(SignedNote(body, (moved,)))
    with pytest.raises(NoteError, match="does not verify"):
        wit.verifier(ALG_COSIGNATURE).verify(SignedNote(body.replace("Extendo", "Extenda"), (sig,)))


# --- tampering and wrong keys -----------------------------------------------------------------------


def test_every_bit_flip_of_a_cosigned_checkpoint_fails() -> None:
    """Property: flipping any single bit of a checkpoint note signed by its log and cosigned by a
    witness makes it fail to parse or fail to verify under the two keys (none passes unnoticed)."""
    log, wit = NoteSigner("l.example", generate_key()), NoteSigner("w.example", generate_key())
    body = Checkpoint("l.example", 12, ROOT).body()
    raw = SignedNote(body, (log.sign(body), wit.cosign(body, 1700000000))).text().encode()
    keys = [log.verifier(), wit.verifier(ALG_COSIGNATURE)]
    assert open_note(parse_note(raw), keys, required=2) == keys
    passed = []
    start = time.perf_counter()
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            open_note(parse_note(bytes(flipped)), keys, required=2)
        except NoteError:
            continue
        passed.append(i)
    assert passed == []
    assert time.perf_counter() - start < 2.0


def test_wrong_key_or_name_is_ignored_not_accepted() -> None:
    """Property: a line is a key's only if both name and key ID match: another key under the same
    name, or the same key under another name, verifies nothing (and refuses nothing)."""
    key = generate_key()
    signer = NoteSigner("example.org/k", key)
    note = SignedNote("hello\n", (signer.sign("hello\n"),))
    assert NoteSigner("example.org/k", generate_key()).verifier().verify(note) is None
    assert NoteSigner("example.org/other", key).verifier().verify(note) is None
    with pytest.raises(NoteError, match="0 of the 1 known keys"):
        open_note(note, [NoteSigner("example.org/k", generate_key()).verifier()])


def test_a_line_claiming_a_known_key_must_verify() -> None:
    """Property: a line with a known key's name and key ID but another key's signature is refused,
    as is one of the wrong length."""
    signer, other = NoteSigner("k", generate_key()), NoteSigner("k", generate_key())
    forged = Signature("k", signer.verifier().key_id, other.sign("hi\n").signature)
    with pytest.raises(NoteError, match="does not verify"):
        signer.verifier().verify(SignedNote("hi\n", (forged,)))
    short = Signature("k", signer.verifier().key_id, b"\x00" * 63)
    with pytest.raises(NoteError, match="63 bytes, not 64"):
        signer.verifier().verify(SignedNote("hi\n", (short,)))


def test_signature_types_do_not_cross() -> None:
    """Property: with the same key and name, a cosignature verifier ignores a note signature and a
    note verifier ignores a cosignature (their key IDs differ by the type byte)."""
    signer = NoteSigner("example.org/same", generate_key())
    body = Checkpoint("example.org/log", 3, ROOT).body()
    signed = SignedNote(body, (signer.sign(body),))
    cosigned = SignedNote(body, (signer.cosign(body, 5),))
    note_v, cosig_v = signer.verifier(ALG_ED25519), signer.verifier(ALG_COSIGNATURE)
    assert note_v.key_id != cosig_v.key_id
    assert cosig_v.verify(signed) is None and note_v.verify(cosigned) is None
    assert note_v.verify(signed) is not None and cosig_v.verify(cosigned) is not None
    with pytest.raises(NoteError):
        open_note(signed, [cosig_v])
    with pytest.raises(NoteError):
        open_note(cosigned, [note_v])
    # the same bytes under the other type's key ID are refused, not accepted
    relabelled = Signature(
        signer.name, cosig_v.key_id, (5).to_bytes(8, "big") + signed.signatures[0].signature
    )
    with pytest.raises(NoteError, match="does not verify"):
        cosig_v.verify(SignedNote(body, (relabelled,)))


def test_cosignature_time_is_checked() -> None:
    """Property: a cosignature time beyond 2^63-1 is refused; times are asked only of cosignature keys
    and of their own signatures; a witness will not sign a time out of range or a non-checkpoint."""
    wit = NoteSigner("w", generate_key())
    v = wit.verifier(ALG_COSIGNATURE)
    body = Checkpoint("o", 1, ROOT).body()
    sig = wit.cosign(body, 9)
    late = Signature("w", v.key_id, (1 << 63).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(NoteError, match="beyond 2\\^63-1"):
        v.verify(SignedNote(body, (late,)))
    with pytest.raises(NoteError, match="state no time"):
        wit.verifier().cosignature_time(sig)
    with pytest.raises(NoteError, match="not w\\+"):
        v.cosignature_time(NoteSigner("x", generate_key()).cosign(body, 9))
    for t in (-1, 1 << 63, True):
        with pytest.raises(NoteError, match="POSIX time"):
            wit.cosign(body, t)
    with pytest.raises(NoteError, match="at least 3 lines"):
        wit.cosign("not a checkpoint\n", 9)


def test_open_note_refuses_a_key_listed_twice() -> None:
    """Property: two verifiers with the same name and key ID are a configuration error (Go's
    ambiguous key), not two signatures."""
    v = NoteVerifier.from_vkey(PETER_VKEY)
    note = parse_note(PETER_TEXT + "\n" + PETER_SIG)
    with pytest.raises(NoteError, match="listed twice"):
        open_note(note, [v, NoteVerifier.from_vkey(PETER_VKEY)])


# --- malformed input --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2003b", "a\nb", "a\x00b"])
def test_bad_key_names_are_refused(name: str) -> None:
    """Property: key names are non-empty, with no '+', Unicode space or control character."""
    with pytest.raises(NoteError, match="key name"):
        NoteSigner(name, generate_key())
    with pytest.raises(NoteError, match="key name"):
        key_id(name, ALG_ED25519, bytes(32))
    with pytest.raises(NoteError, match="key name"):
        Signature(name, bytes(4), b"x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\n\n— k QUJDRA\n", "not valid base64"),
        ("a\n\n— k QUJDRA==\n", "line 1 is 4 bytes"),
        ("a\n\n— k QUJDRB==\n", "canonical"),
        ("a\n\n— k  QUJDREVG\n", "not valid base64"),
        ("a\n\n- k QUJDREVG\n", "em dash"),
        ("a\n\n—k QUJDREVG\n", "em dash"),
        ("a\n\n— kQUJDREVG\n", "no space"),
        ("a\n\n— k QUJDREVG\nnot a signature\n", "line 2 does not start with an em dash"),
        ("a\r\n\n— k QUJDREVG\n", "U\\+000D"),
        ("a\ud800\n\n— k QUJDREVG\n", "surrogate"),
        ("a\n\n", "no signature lines"),
    ],
)
def test_malformed_notes_say_what_is_wrong(text: str, message: str) -> None:
    """Property: each malformed note is refused with a message naming the fault."""
    with pytest.raises(NoteError, match=message):
        parse_note(text)


def test_signature_count_limit() -> None:
    """Property: a note of MAX_SIGNATURES lines parses (and every line of a known key is checked);
    one more is refused, when parsed or built."""
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    note = parse_note(PETER_TEXT + "\n" + PETER_SIG * MAX_SIGNATURES)
    assert len(note.signatures) == MAX_SIGNATURES and open_note(note, [peter]) == [peter]
    with pytest.raises(NoteError, match=f"more than the {MAX_SIGNATURES}"):
        parse_note(PETER_TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1))
    with pytest.raises(NoteError, match=f"at most {MAX_SIGNATURES}"):
        SignedNote(PETER_TEXT, note.signatures + note.signatures[:1])


def test_unsigned_or_badly_ended_notes_have_no_text() -> None:
    """Property: a note's text ends with a newline, and only a signed note prints."""
    with pytest.raises(NoteError, match="end with a newline"):
        SignedNote("no newline")
    with pytest.raises(NoteError, match="without signatures"):
        SignedNote("x\n").text()
    with pytest.raises(NoteError, match="end with a newline"):
        NoteSigner("k", generate_key()).sign("no newline")


def test_checkpoint_round_trip() -> None:
    """Property: a checkpoint prints as origin, size, base64 root and extension lines, and parses back
    to itself; size 0 and 2^63-1 are allowed."""
    for cp in (Checkpoint("example.org/log", 0, ROOT), Checkpoint("o", (1 << 63) - 1, ROOT, ("a", "b c"))):
        assert Checkpoint.parse(cp.body()) == cp
    assert Checkpoint("o", 5, ROOT, ("x",)).body() == f"o\n5\n{base64.b64encode(ROOT).decode()}\nx\n"


GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"o\n01\n{GOOD_ROOT}\n", "leading zero"),
        (f"o\n00\n{GOOD_ROOT}\n", "leading zero"),
        (f"o\n-1\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n+1\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n 1\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n1_000\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n1e3\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n0x10\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n\u0661\u0662\n{GOOD_ROOT}\n", "not a non-negative decimal"),
        (f"o\n9223372036854775808\n{GOOD_ROOT}\n", "larger than 2\\^63-1"),
        (f"o\n{'9' * 5000}\n{GOOD_ROOT}\n", "larger than 2\\^63-1"),
        ("o\n1\nnot base64!\n", "not valid base64"),
        (f"o\n1\n{GOOD_ROOT[:-1]}\n", "not valid base64"),
        (f"o\n1\n{GOOD_ROOT[:-2]}9=\n", "canonical"),
        (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "31 bytes, not 32"),
        (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "33 bytes, not 32"),
        ("o\n1\n", "at least 3 lines"),
        ("o\n", "at least 3 lines"),
        ("", "end with a newline"),
        (f"o\n1\n{GOOD_ROOT}", "end with a newline"),
        (f"\n1\n{GOOD_ROOT}\n", "line 1 of the checkpoint is empty"),
        (f"o\n1\n{GOOD_ROOT}\n\n", "line 4 of the checkpoint is empty"),
        (f"o\t\n1\n{GOOD_ROOT}\n", "U\\+0009"),
    ],
)
def test_malformed_checkpoints(body: str, message: str) -> None:
    """Property: a checkpoint text with a wrongly spelled size (leading zeros, sign, non-decimal,
    too large), a bad root hash (base64, length) or missing or empty lines is refused, saying so."""
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(body)


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        ("o", -1, ROOT),
        ("o", 1 << 63, ROOT),
        ("o", 1, bytes(31)),
        ("o", 1, ROOT, ("",)),
    ],
)
def test_checkpoint_fields_are_checked(args: tuple[object, ...]) -> None:
    """Property: a Checkpoint cannot be built with an empty or multi-line origin or extension, a size
    out of range, or a root hash that is not 32 bytes."""
    with pytest.raises(NoteError):
        Checkpoint(*args)  # type: ignore[arg-type]


# --- private key files ------------------------------------------------------------------------------


def test_private_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    """Property: a written key file has mode 0600, holds unencrypted PKCS#8 PEM, loads back as the
    same key, and no temporary file is left beside it."""
    key = generate_key()
    path = tmp_path / "witness.key"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    assert load_private_key(path).private_bytes(*raw) == key.private_bytes(*raw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["witness.key"]


def test_private_key_file_is_never_overwritten(tmp_path: Path) -> None:
    """Property: writing a key where a file exists fails naming the file, and leaves it unchanged."""
    path = tmp_path / "witness.key"
    write_private_key(path, generate_key())
    before = path.read_bytes()
    with pytest.raises(NoteError, match=f"{path} already exists"):
        write_private_key(path, generate_key())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["witness.key"]
    with pytest.raises(NoteError, match="does not exist"):
        write_private_key(tmp_path / "missing" / "k.key", generate_key())


def test_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    """Property: a key file that group or others may read (or write) is refused, saying to chmod 600."""
    path = tmp_path / "k.key"
    write_private_key(path, generate_key())
    for mode in (0o644, 0o640, 0o604, 0o620):
        os.chmod(path, mode)
        with pytest.raises(NoteError, match=f"mode {mode:04o}.*chmod 600"):
            load_private_key(path)
    os.chmod(path, 0o400)
    load_private_key(path)


def test_bad_private_key_files_are_refused(tmp_path: Path) -> None:
    """Property: a missing file, a folder, a non-PEM file, an encrypted key and a key that is not
    Ed25519 are each refused with a message saying which."""
    with pytest.raises(NoteError, match="does not exist"):
        load_private_key(tmp_path / "none.key")

    def write(name: str, data: bytes) -> Path:
        p = tmp_path / name
        p.write_bytes(data)
        p.chmod(0o600)
        return p

    with pytest.raises(NoteError, match="not a PEM file"):
        load_private_key(write("text.key", b"hello\n"))
    with pytest.raises(NoteError, match="not hold a valid PEM"):
        load_private_key(
            write("broken.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        )
    encrypted = generate_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(NoteError, match="encrypted"):
        load_private_key(write("enc.key", encrypted))
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(NoteError, match="not an Ed25519 private key"):
        load_private_key(write("ec.key", ec_pem))
    folder = tmp_path / "folder.key"
    folder.mkdir(mode=0o700)
    with pytest.raises(NoteError, match=r"folder|regular file"):
        load_private_key(folder)
