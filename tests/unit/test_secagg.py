"""Secure aggregation's cryptography (:mod:`accord.policies.secagg`) and the share format
(:mod:`accord.query.share`): masks cancel exactly, are bound to the query, the pair and the
transcript, and every signed message refuses a changed byte."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from accord.errors import InternalError, InvalidQuery, PermissionDenied, Unauthenticated
from accord.policies.secagg import (
    KeyShare,
    check_participants,
    mask,
    new_key,
    public_bytes,
    sign_key,
    sign_share,
    sum_masked,
    transcript,
)
from accord.policies.verifying import signature_valid
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction
from accord.query.release import ReleaseColumn
from accord.query.share import Measure, Share
from tests.conftest import TestPki
from tests.signing import verifier

NAMES = ("county", "district-a", "district-b")
DIGEST = bytes(32)


def _shares(names: tuple[str, ...] = NAMES, query_id: str = "q-1") -> tuple[list, list[KeyShare]]:
    keys = [new_key() for _ in names]
    shares = [
        KeyShare(n, query_id, DIGEST, names, public_bytes(k), b"") for n, k in zip(names, keys, strict=True)
    ]
    return keys, shares


def _signed_64() -> int:
    return secrets.randbelow(1 << 63) * (1 if secrets.randbelow(2) else -1)


def test_the_masked_vectors_sum_to_the_sum_of_the_values_exactly() -> None:
    """Property: over every participant, the pairwise masks cancel modulo 2**64: the decoded sum is
    the exact sum of the signed values (when it fits in 64 bits), for 2 to 7 participants."""
    for n in range(2, 8):
        names = tuple(f"node-{i}" for i in range(n))
        keys, shares = _shares(names)
        script = transcript(shares)
        values = [[_signed_64() // n for _ in range(12)] for _ in names]
        masked = [
            mask(v, k, name, shares, "q-1", script) for v, k, name in zip(values, keys, names, strict=True)
        ]
        assert list(sum_masked(masked)) == [sum(col) for col in zip(*values, strict=True)]
        assert all(m != tuple(v % (1 << 64) for v in vals) for m, vals in zip(masked, values, strict=True))


def test_a_missing_share_leaves_the_sum_masked() -> None:
    """Property: without one participant's share the others' masks do not cancel: the partial sum
    says nothing of the values (it differs from their sum in every entry)."""
    keys, shares = _shares()
    script = transcript(shares)
    values = [[5] * 16 for _ in NAMES]
    masked = [mask(v, k, n, shares, "q-1", script) for v, k, n in zip(values, keys, NAMES, strict=True)]
    partial = sum_masked(masked[:2])
    assert all(p != 10 for p in partial)


def test_masks_depend_on_the_query_the_transcript_and_the_key() -> None:
    """Property: the same node and values masked for another query id, under another transcript or
    with another key give unrelated words (no mask is ever reused across queries or attempts)."""
    keys, shares = _shares()
    script = transcript(shares)
    base = mask([0] * 8, keys[0], "county", shares, "q-1", script)
    assert mask([0] * 8, keys[0], "county", shares, "q-1", script) == base  # deterministic
    assert set(mask([0] * 8, keys[0], "county", shares, "q-2", script)).isdisjoint(base)
    assert set(mask([0] * 8, keys[0], "county", shares, "q-1", bytes(32))).isdisjoint(base)
    other = [dataclasses.replace(shares[0], public_key=public_bytes(new_key())), *shares[1:]]
    assert set(mask([0] * 8, new_key(), "county", other, "q-1", script)).isdisjoint(base)


def test_the_transcript_covers_every_key_share() -> None:
    """Property: changing any member of any key share (or leaving one out) changes the transcript."""
    _, shares = _shares()
    script = transcript(shares)
    assert transcript(list(reversed(shares))) == script  # order-free
    for field, value in (
        ("query_id", "q-2"),
        ("payload_digest", bytes([1]) * 32),
        ("participants", ("county", "district-a")),
        ("public_key", public_bytes(new_key())),
        ("node", "district-c"),
    ):
        changed = [dataclasses.replace(shares[1], **{field: value}), shares[0], shares[2]]
        assert transcript(changed) != script, field
    assert transcript(shares[:2]) != script


def test_a_low_order_key_is_refused() -> None:
    """Property: an all-zero X25519 public key (whose shared secret is zero, known to everyone) is
    refused instead of giving a mask the coordinator could compute."""
    keys, shares = _shares()
    bad = [shares[0], dataclasses.replace(shares[1], public_key=bytes(32)), shares[2]]
    with pytest.raises(InternalError, match="unusable X25519 key"):
        mask([1], keys[0], "county", bad, "q-1", transcript(bad))


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (("county",), "from 2"),
        (("district-a", "county"), "name order"),
        (("county", "county"), "name order"),
        (("county", "Bad Name"), "not a node name"),
        (tuple(f"n{i:02d}" for i in range(65)), "from 2 to 64"),
    ],
)
def test_participant_sets_are_checked(names: tuple[str, ...], why: str) -> None:
    with pytest.raises(InvalidQuery, match=why):
        check_participants(names)


def _node_key(pki: TestPki, name: str) -> tuple[object, bytes]:
    files = pki.node(name).read()
    key = load_pem_private_key(files.key, password=None)
    return key, x509.load_pem_x509_certificate(files.cert).public_bytes(Encoding.DER)


def test_signed_key_shares_verify_only_unchanged_and_only_as_their_node(pki: TestPki) -> None:
    """Property: a key share signed with a node certificate verifies as that node; any changed
    member fails the signature; another node's certificate, or a certificate of another role,
    is refused by the verifier."""
    key, der = _node_key(pki, "county")
    share = sign_key(key, KeyShare("county", "q-1", DIGEST, NAMES, public_bytes(new_key()), der))  # type: ignore[arg-type]
    checker = verifier(pki)
    certificate = checker.node_certificate(share.certificate, "county")
    assert signature_valid(certificate, share.signature, share.message())
    for field, value in (
        ("query_id", "q-2"),
        ("public_key", public_bytes(new_key())),
        ("participants", NAMES[:2]),
    ):
        changed = dataclasses.replace(share, **{field: value})
        assert not signature_valid(certificate, changed.signature, changed.message()), field
    with pytest.raises(PermissionDenied, match="signed by"):
        checker.node_certificate(share.certificate, "district-a")
    coordinator = x509.load_pem_x509_certificate(pki.coordinator.read().cert).public_bytes(Encoding.DER)
    with pytest.raises(PermissionDenied):
        checker.node_certificate(coordinator, "coordinator")
    with pytest.raises(Unauthenticated):
        checker.node_certificate(b"not a certificate", "county")


def _share(**changes: object) -> Share:
    base = Share(
        query_id="q-1",
        request="ab" * 32,
        node="county",
        dataset="census",
        agreement="open",
        epsilon=Epsilon.parse("1"),
        delta="1e-9",
        rho="1/100",
        honest=3,
        participants=NAMES,
        columns=(ReleaseColumn("n", AggregateFunction.COUNT, None),),
        groups=((1,), (2,)),
        measures=(Measure("count", None, 0, 1, 6.5),),
        cells=((0,),),
        support=None,
        min_group_size=0,
        suppress_below=0,
        vector=(10, -3),
    )
    return dataclasses.replace(base, **changes)


def test_a_share_round_trips_and_refuses_any_other_spelling() -> None:
    """Property: a share's bytes are canonical: decoding gives it back, and a re-spelt, extended or
    out-of-range share is refused."""
    share = _share()
    assert Share.decode(share.encode()) == share
    masked = _share(vector=((1 << 64) - 1, 0), masked=True, transcript="ab" * 32)
    assert Share.decode(masked.encode()) == masked
    text = share.encode()
    for bad in (
        text.replace(b'"honest":3', b'"honest": 3'),
        text[:-1] + b',"extra":1}',
        text.replace(b"[10,-3]", b"[10,-3,4]"),
        text.replace(b"[10,-3]", b"[10," + str(-(1 << 63) - 1).encode() + b"]"),
        text.replace(b'"masked":false', b'"masked":true'),
        b"[]",
    ):
        with pytest.raises(InternalError):
            Share.decode(bad)


def test_a_signed_share_fails_when_one_byte_changes(pki: TestPki) -> None:
    """Property: a masked share signed by its node verifies; flipping any single byte of the body
    breaks the signature (checked for every byte position)."""
    key, der = _node_key(pki, "county")
    body = _share(vector=(5, 6), masked=True, transcript="ab" * 32).encode()
    signed = sign_share(key, der, body)  # type: ignore[arg-type]
    certificate = x509.load_der_x509_certificate(der)
    assert signature_valid(certificate, signed.signature, signed.message())
    for i in range(len(body)):
        changed = bytearray(body)
        changed[i] ^= 0x01
        assert not signature_valid(
            certificate, signed.signature, dataclasses.replace(signed, body=bytes(changed)).message()
        )
