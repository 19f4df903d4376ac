"""Signed queries: the canonical payload, the signature, and every way a node's verifier refuses
an envelope someone other than the analyst made or changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import ConfigError, InvalidQuery, PermissionDenied, Unauthenticated
from accord.policies.pki import create_ca, init_federation, issue
from accord.policies.signing import (
    MAX_PAYLOAD_BYTES,
    SIGNATURE_CONTEXT,
    QueryPayload,
    QuerySigner,
    SignedQuery,
    sign_query,
)
from accord.policies.verifying import QueryVerifier
from accord.rpc.transport import TlsFiles
from tests.conftest import TestPki
from tests.signing import sign, signer, verifier

NOW = datetime(2026, 12, 3, 9, 0, 0, 250_000, tzinfo=UTC)
SQL = "SELECT COUNT(*) FROM citizens"


def payload(**changes: object) -> QueryPayload:
    base = QueryPayload("q-1", "alice", SQL, "0.50", NOW, coordinator="coordinator")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ---- the payload --------------------------------------------------------------------------------


def test_payload_is_canonical_json() -> None:
    """Property: the payload is RFC 8785 canonical JSON: members sorted, no whitespace, UTF-8, the
    epsilon exactly as typed, the time in UTC with six decimals."""
    data = payload(sql="SELECT COUNT(*) FROM citizens WHERE ward = 'St Mary\u2019s'").encode()
    assert (
        data
        == (
            '{"agreement":"","analyst":"alice","coordinator":"coordinator","epsilon":"0.50",'
            '"issued_at":"2026-12-03T09:00:00.250000Z","query_id":"q-1",'
            '"sql":"SELECT COUNT(*) FROM citizens WHERE ward = \'St Mary\u2019s\'","type":"accord.query.v1"}'
        ).encode()
    )
    assert QueryPayload.decode(data) == payload(
        sql="SELECT COUNT(*) FROM citizens WHERE ward = 'St Mary\u2019s'"
    )


@given(st.text(), st.text(max_size=20), st.text(max_size=20))
def test_any_payload_round_trips(sql: str, query_id: str, agreement: str) -> None:
    """Property: whatever text a payload holds (quotes, newlines, control characters, any script),
    its canonical bytes decode back to it."""
    try:
        p = payload(sql=sql, query_id=query_id, agreement=agreement)
    except InvalidQuery:  # text that is not valid UTF-8 (a lone surrogate)
        return
    assert QueryPayload.decode(p.encode()) == p


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.replace(b'{"agreement"', b'{ "agreement"'),  # whitespace
        lambda d: d.replace(
            b'"type":"accord.query.v1"}', b'"type":"accord.query.v1","x":"y"}'
        ),  # extra member
        lambda d: d.replace(b'"agreement":"",', b""),  # a member missing
        lambda d: d.replace(b'"query_id":"q-1",', b'"query_id":"q-1","query_id":"q-2",'),  # duplicate
        lambda d: d.replace(b'"epsilon":"0.50"', b'"epsilon":0.5'),  # not a string
        lambda d: d.replace(b"accord.query.v1", b"accord.query.v9"),  # another type
        lambda d: d.replace(b"2026-12-03T09:00:00.250000Z", b"2026-12-03T09:00:00Z"),  # time form
        lambda d: d.replace(b"2026-12-03T09", b"2026-02-30T09"),  # not a date
        lambda d: b"\xff" + d,  # not UTF-8
        lambda d: d[:-1],  # not JSON
        lambda d: json.dumps(json.loads(d), sort_keys=False).encode(),  # another order and spacing
        lambda d: d.replace(b"SELECT", b"\\u0053ELECT"),  # an escape JCS would not write
    ],
)
def test_non_canonical_payloads_are_refused(mangle: object) -> None:
    """Property: a payload that is not exactly the canonical form is refused, so one signature
    can only ever mean one query."""
    data = mangle(payload().encode())  # type: ignore[operator]
    with pytest.raises(InvalidQuery, match="malformed"):
        QueryPayload.decode(data)


def test_request_digest_ignores_only_the_time_the_route_and_the_epsilon_spelling() -> None:
    """Property: a query re-signed later, sent through another coordinator, or with its epsilon
    written another way, is the same query; another SQL, epsilon, agreement, analyst or id is not."""
    base = payload().request_digest()
    assert payload(issued_at=NOW + timedelta(hours=5)).request_digest() == base
    assert payload(coordinator="standby").request_digest() == base
    assert payload(epsilon="1/2").request_digest() == base
    for change in (
        {"sql": SQL + " "},
        {"epsilon": "0.51"},
        {"agreement": "a"},
        {"analyst": "bob"},
        {"query_id": "q-2"},
    ):
        assert payload(**change).request_digest() != base, change


def test_envelope_bytes_round_trip_and_refuse_truncation() -> None:
    signed = SignedQuery(b"p" * 5, b"s" * 70, b"c" * 300)
    data = signed.to_bytes()
    assert SignedQuery.from_bytes(data) == signed
    assert signed.payload_digest() == hashlib.sha256(b"p" * 5).digest()
    for bad in (data[:-1], data + b"x", data[:3], b""):
        with pytest.raises(ValueError):
            SignedQuery.from_bytes(bad)


# ---- the verifier ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(pki: TestPki) -> TlsFiles:
    return pki.analyst("alice")


def test_a_genuine_query_is_verified(pki: TestPki, tls: TlsFiles) -> None:
    """Property (control): alice's own signed query passes, naming her and what she asked."""
    verified = verifier(pki).verify(sign(tls, SQL, "0.50", "q-1"))
    assert str(verified.analyst) == "analyst/alice"
    assert (verified.request.query_id, verified.request.sql, str(verified.request.epsilon)) == (
        "q-1",
        SQL,
        "1/2",
    )


def _resigned_payload(signed: SignedQuery, **changes: object) -> SignedQuery:
    """What a tamperer can do without the key: change the payload, keep the signature."""
    return dataclasses.replace(
        signed, payload=dataclasses.replace(QueryPayload.decode(signed.payload), **changes).encode()
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"sql": "SELECT SUM(income) FROM citizens"},
        {"epsilon": "5"},
        {"analyst": "bob"},
        {"query_id": "q-other"},
    ],
    ids=["sql", "epsilon", "analyst", "query_id"],
)
def test_altered_payload_is_refused(pki: TestPki, tls: TlsFiles, change: dict[str, str]) -> None:
    """Property: changing anything the analyst signed breaks the signature: UNAUTHENTICATED,
    reason SIGNATURE_INVALID, naming the analyst whose signature it is."""
    with pytest.raises(Unauthenticated) as info:
        verifier(pki).verify(_resigned_payload(sign(tls, SQL), **change))
    assert info.value.reason == "SIGNATURE_INVALID" and "alice" in info.value.message


def test_altered_time_is_refused(pki: TestPki, tls: TlsFiles) -> None:
    """Property: moving the time of signing (to make an old query fresh) breaks the signature."""
    old = sign(tls, SQL, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(Unauthenticated, match="changed after"):
        verifier(pki).verify(_resigned_payload(old, issued_at=datetime.now(UTC)))


def test_another_analysts_certificate_cannot_carry_alices_signature(
    pki: TestPki, tls: TlsFiles, tmp_path: Path
) -> None:
    """Property: swapping in another analyst's certificate (to charge bob, say) breaks the signature."""
    bob = issue(pki.root, tmp_path, "analyst", "bob")
    bob_der = x509.load_pem_x509_certificate(bob.cert.read_bytes()).public_bytes(Encoding.DER)
    swapped = dataclasses.replace(sign(tls, SQL), certificate=bob_der)
    with pytest.raises(Unauthenticated) as info:
        verifier(pki).verify(swapped)
    assert info.value.reason == "SIGNATURE_INVALID"
    # and bob's key signing a payload that names alice is refused as a mismatch
    forged = signer(TlsFiles(bob.cert, bob.key, pki.ca_cert))
    p = payload(issued_at=datetime.now(UTC))
    with pytest.raises(Unauthenticated) as mismatch:
        verifier(pki).verify(sign_query(p, forged._key, forged._certificate))
    assert mismatch.value.reason == "ANALYST_MISMATCH"


def test_stale_and_future_queries_are_refused(pki: TestPki, tls: TlsFiles) -> None:
    """Property: a query signed longer ago than max_age (plus the skew allowance), or further in
    the future than the skew allowance, is refused with PERMISSION_DENIED saying what to do;
    inside the window it passes."""
    v = verifier(pki, max_age=300, skew=30)
    now = datetime.now(UTC)
    v.verify(sign(tls, SQL, now=now - timedelta(seconds=320)), now=now)  # 300 + 30 allowed
    v.verify(sign(tls, SQL, now=now + timedelta(seconds=25)), now=now)
    with pytest.raises(PermissionDenied) as stale:
        v.verify(sign(tls, SQL, now=now - timedelta(seconds=340)), now=now)
    assert stale.value.reason == "QUERY_NOT_FRESH" and "send it again" in stale.value.message
    with pytest.raises(PermissionDenied) as future:
        v.verify(sign(tls, SQL, now=now + timedelta(seconds=40)), now=now)
    assert future.value.reason == "QUERY_FROM_THE_FUTURE" and "clock" in future.value.message


def _cert(tls: TlsFiles) -> tuple[x509.Certificate, object]:
    return x509.load_pem_x509_certificate(tls.cert.read_bytes()), load_pem_private_key(
        tls.key.read_bytes(), None
    )


def test_bad_certificates_are_refused(pki: TestPki, tmp_path: Path) -> None:
    """Property: an analyst certificate that expired, is not yet valid, comes from another CA, or
    belongs to another role is refused at the node, each with its own reason."""
    now = datetime.now(UTC)
    cases = {
        "expired": issue(
            pki.root,
            tmp_path / "e",
            "analyst",
            "alice",
            not_before=now - timedelta(days=10),
            not_after=now - timedelta(days=1),
        ),
        "not-yet-valid": issue(
            pki.root,
            tmp_path / "f",
            "analyst",
            "alice",
            not_before=now + timedelta(days=1),
            not_after=now + timedelta(days=10),
        ),
        "node-role": issue(pki.root, tmp_path / "n", "node", "alice"),
    }
    other = init_federation(tmp_path / "other", analysts=("alice",))
    cases["other-ca"] = next(c for c in other.issued if c.identity.role == "analyst")
    expected = {
        "expired": (Unauthenticated, "SIGNER_CERTIFICATE_NOT_VALID"),
        "not-yet-valid": (Unauthenticated, "SIGNER_CERTIFICATE_NOT_VALID"),
        "node-role": (PermissionDenied, "SIGNER_NOT_AN_ANALYST"),
        "other-ca": (Unauthenticated, "SIGNER_NOT_TRUSTED"),
    }
    for name, issued in cases.items():
        cert, key = _cert(TlsFiles(issued.cert, issued.key, pki.ca_cert))
        signed = sign_query(payload(issued_at=now), key, cert)  # type: ignore[arg-type]
        error, reason = expected[name]
        with pytest.raises(error) as info:
            verifier(pki).verify(signed, now=now)
        assert type(info.value) is error and info.value.reason == reason, name


def test_garbage_envelopes_are_refused_without_a_raw_exception(pki: TestPki, tls: TlsFiles) -> None:
    """Property: a certificate that is not one, or a signature of the wrong length, is a typed refusal."""
    good = sign(tls, SQL)
    with pytest.raises(Unauthenticated) as info:
        verifier(pki).verify(dataclasses.replace(good, certificate=b"not a certificate"))
    assert info.value.reason == "SIGNER_CERTIFICATE_INVALID"
    for signature in (b"", b"\x00" * 64, good.signature[:-1]):
        with pytest.raises(Unauthenticated, match="signature"):
            verifier(pki).verify(dataclasses.replace(good, signature=signature))


def test_the_signature_is_domain_separated(pki: TestPki, tls: TlsFiles) -> None:
    """Property: the signed message is the context string followed by the payload, so a signature
    the key made over the bare payload (for anything else) is not a query signature."""
    _, key = _cert(tls)
    data = payload(issued_at=datetime.now(UTC)).encode()
    bare = key.sign(data, ec.ECDSA(hashes.SHA256()))  # type: ignore[attr-defined]
    with pytest.raises(Unauthenticated, match="signature"):
        verifier(pki).verify(SignedQuery(data, bare, sign(tls, SQL).certificate))
    assert SIGNATURE_CONTEXT.endswith(b"\n")


def test_signer_refuses_what_nodes_would_refuse(pki: TestPki, tls: TlsFiles) -> None:
    """Property: the client will not sign with a node's certificate, a key of another certificate,
    or files that are not PEM: the analyst learns it before anything is sent."""
    node = pki.node("county").read()
    alice = tls.read()
    with pytest.raises(ConfigError, match="node certificate"):
        QuerySigner.from_pem(node.key, node.cert)
    with pytest.raises(ConfigError, match="does not belong"):
        QuerySigner.from_pem(node.key, alice.cert)
    with pytest.raises(ConfigError, match="PEM"):
        QuerySigner.from_pem(b"nothing", alice.cert)
    with pytest.raises(ConfigError, match="cannot sign"):
        QuerySigner(
            ed25519.Ed25519PrivateKey.generate().public_key(), x509.load_pem_x509_certificate(alice.cert)
        )  # type: ignore[arg-type]


def test_verifier_needs_a_ca() -> None:
    with pytest.raises(ValueError, match="CA"):
        QueryVerifier([], timedelta(seconds=1), timedelta(0))


def test_hostile_payloads_are_typed_refusals() -> None:
    """Property: deep nesting (which makes Python's JSON parser recurse), an oversized payload and a
    malformed agreement id are each refused as a malformed query, never a raw exception."""
    with pytest.raises(InvalidQuery, match="malformed"):
        QueryPayload.decode(b"[" * 100_000)
    with pytest.raises(InvalidQuery, match="longer than"):
        QueryPayload.decode(b" " * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(InvalidQuery, match="agreement id"):
        payload(agreement="dsa 7\nforged log line")
    assert payload(agreement="dsa-2026.7").agreement == "dsa-2026.7"


def test_an_expired_ca_beside_the_one_used_does_not_refuse(
    pki: TestPki, tls: TlsFiles, tmp_path: Path
) -> None:
    """Property: only the certificates of the chain a signer took are checked for dates: an expired
    CA also in the trust bundle (a CA rotation) refuses nothing; the CA actually used expiring does."""
    old_ca, _ = create_ca(tmp_path / "old", not_before=datetime.now(UTC) - timedelta(days=400), days=30)
    bundle = [
        x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()),
        x509.load_pem_x509_certificate(old_ca.read_bytes()),
    ]
    v = QueryVerifier(bundle, timedelta(minutes=5), timedelta(minutes=1))
    v.verify(sign(tls, SQL))
    later = datetime.now(UTC) + timedelta(days=5)  # the session CA is valid for 2 days
    with pytest.raises(Unauthenticated, match=r"CA that issued it|analyst certificate") as info:
        v.verify(sign(tls, SQL, now=later), now=later)
    assert info.value.reason == "SIGNER_CERTIFICATE_NOT_VALID"


@pytest.mark.parametrize("kind", ["query", "explain", "budget"])
def test_a_query_id_outside_the_pattern_is_refused_for_every_kind(pki: TestPki, kind: str) -> None:
    """Property: a query id of 129 characters, or with a space or a newline, cannot be signed or
    decoded as any kind of request (budget requests included): it is written to every node's audit
    log, which must never hold what an analyst wrote freely."""
    for query_id in ("q" * 129, "alice smith", "q\nforged", "-leading"):
        with pytest.raises(InvalidQuery, match="query_id"):
            sign(pki.analyst(), "SELECT COUNT(*) FROM t", query_id=query_id, kind=kind)
