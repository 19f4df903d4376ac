"""Secure aggregation end to end: three real nodes over mTLS whose census dataset is answered only
by secure aggregation with distributed discrete Gaussian noise, a real coordinator, the analyst's
client; and a coordinator that misbehaves, played by the test with the coordinator's own
certificate and raw gRPC stubs (what a compromised coordinator holds)."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import grpc
import pytest

from accord.coordinator.secure import node_verifier
from accord.coordinator.secure_combine import combine_shares
from accord.errors import IntegrityError, PartialFailure, PermissionDenied, Unavailable
from accord.node.config import load_node_config
from accord.node.config_writer import write_node_config
from accord.node.secure_release import noise_summary
from accord.node.server import start_node
from accord.node.state.sqlite import StateReader
from accord.policies.audit_check import check_entries, load_agreements_for_check
from accord.policies.audit_entry import decode
from accord.policies.audit_report import summarise
from accord.policies.decision import Decision
from accord.policies.secagg import KeyShare, SignedShare, transcript
from accord.policies.signing import QueryPayload, SignedQuery
from accord.protos import convert, convert_secure
from accord.protos.rpcstatus import error_from_rpc
from accord.protos.v1 import node_pb2
from accord.query.epsilon import Epsilon
from accord.query.release import Cell
from accord.query.share import Share
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    Federation,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    start_federation,
    write_node,
)
from tests.integration.secure_federation import NODES, recorded_share, secure_node_configs, start_secure
from tests.signing import sign

RECOVERY_SECONDS = 10.0
DECISION_MEMBERS = {f.name for f in dataclasses.fields(Decision)} | {"type", "v"}
SQL = "SELECT race, COUNT(*) AS n, AVG(age) AS mean_age FROM census GROUP BY race"


@pytest.fixture
def fed(tmp_path: Path, pki: TestPki) -> Iterator[Federation]:
    federation = start_secure(tmp_path, pki)
    yield federation
    federation.stop()


def _reason(err: grpc.RpcError) -> str:
    failure = error_from_rpc(err)
    assert isinstance(failure, PermissionDenied), failure
    return failure.reason


class Mallory:
    """A coordinator's view: its own certificate, raw stubs to every node, signed queries it relays."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.stubs = {n: fed.node_stub(n)[1] for n in NODES}

    def join(self, signed: SignedQuery, node: str, participants: tuple[str, ...]) -> KeyShare:
        request = node_pb2.SecureJoinRequest(
            query=convert.signed_query_to_pb(signed), participants=participants
        )
        return convert_secure.key_share_from_pb(self.stubs[node].JoinSecureAggregation(request, timeout=20))

    def answer(self, signed: SignedQuery, node: str, keys: list[KeyShare]) -> SignedShare:
        request = node_pb2.SecureAnswerRequest(
            query=convert.signed_query_to_pb(signed),
            keys=[convert_secure.key_share_to_pb(k) for k in keys],
        )
        return convert_secure.secure_share_from_pb(self.stubs[node].AnswerSecure(request, timeout=20))

    def round(
        self, signed: SignedQuery, nodes: tuple[str, ...] = NODES
    ) -> tuple[list[KeyShare], list[SignedShare]]:
        keys = [self.join(signed, n, nodes) for n in nodes]
        return keys, [self.answer(signed, n, keys) for n in nodes]


def _decode(share: SignedShare) -> Share:
    return Share.decode(share.body)


def test_the_answer_is_the_exact_sum_of_the_nodes_noisy_shares_and_says_its_mode(
    fed: Federation, tmp_path: Path
) -> None:
    """Property: the analyst gets a secure-aggregated answer (mode, delta, every holder contributing)
    whose every value is exactly the sum of the noisy values the nodes recorded (and never sent
    unmasked), with the combined noise's scale sigma * sqrt(3) and a 95% interval from the sum of
    three discrete Gaussians."""
    query_id = str(uuid.uuid4())
    release = fed.client().query_release(SQL, "1", query_id=query_id)
    assert (release.aggregation, release.delta) == ("secure", "1e-9")
    assert release.contributing_nodes == NODES and not release.partial
    shares = [recorded_share(tmp_path, n, "alice", query_id) for n in NODES]
    first = shares[0]
    assert not first.masked and first.honest == 3 and first.participants == NODES
    counts = [sum(s.values(first.cells[0][0])[i] for s in shares) for i in range(len(first.groups))]
    assert [row.cells[0].estimate.value for row in release.rows] == counts
    sums = [sum(s.values(first.cells[1][0])[i] for s in shares) for i in range(len(first.groups))]
    assert [row.cells[1].sum.value for row in release.rows if row.cells[1].sum] == sums
    sigma = first.measures[first.cells[0][0]].sigma
    estimate = release.rows[0].cells[0].estimate
    assert estimate.noise_scale == pytest.approx(sigma * math.sqrt(3))
    assert estimate.mechanism.value == "discrete_gaussian"
    assert 1.9 * sigma * math.sqrt(3) < estimate.ci_high - estimate.value < 2.1 * sigma * math.sqrt(3)


def test_a_preview_gives_the_noise_the_secure_answer_gets(fed: Federation, tmp_path: Path) -> None:
    """Property: previewing a secure-aggregated query (spending nothing) gives each node's share and
    the combined noise the answer then has: the same scale and the same 95% half-width; a target
    half-width gives an epsilon whose answer meets it."""
    client = fed.client()
    sql = "SELECT COUNT(*) AS n FROM census"
    preview = client.explain(sql, "1", target_half_width=10)
    combined = preview.combined[0].estimate
    assert combined is not None and combined.mechanism.value == "discrete_gaussian"
    release = client.query_release(sql, "1")
    estimate = release.rows[0].cells[0].estimate
    assert combined.noise_scale == pytest.approx(estimate.noise_scale)
    assert combined.half_width == estimate.ci_high - estimate.value
    needed = preview.combined[0].epsilon_for_target
    assert needed is not None and needed.value > 1
    wider = client.query_release(sql, str(needed.value)).rows[0].cells[0].estimate
    assert wider.ci_high - wider.value <= 10


def test_a_retry_returns_the_same_answer_and_charges_once(fed: Federation, tmp_path: Path) -> None:
    """Property: retrying a secure-aggregated query id runs both rounds again under fresh keys but
    over the shares recorded the first time: the same combined answer, one charge per node."""
    client = fed.client()
    query_id = str(uuid.uuid4())
    first = client.query_release("SELECT COUNT(*) AS n FROM census", "1/2", query_id=query_id)
    again = client.query_release("SELECT COUNT(*) AS n FROM census", "1/2", query_id=query_id)
    assert again.rows == first.rows
    assert again.shares != first.shares  # masked afresh
    for node in NODES:
        with StateReader(tmp_path / "state" / f"{node}.sqlite3", node) as reader:
            assert reader.spent("open", "alice").analyst.value == Fraction(1, 2)


def test_each_node_logs_its_participation_but_never_its_value(fed: Federation, tmp_path: Path) -> None:
    """Property: a node's audit log records its joining and its answer with the participants, the
    hash of its key for the query and its noise parameters, and no value, noisy or not."""
    query_id = str(uuid.uuid4())
    fed.client().query_release("SELECT COUNT(*) AS n FROM census", "1", query_id=query_id)
    for node in NODES:
        with StateReader(tmp_path / "state" / f"{node}.sqlite3", node) as reader:
            raw = reader.log_entries(0, reader.log_size())
        mine = [decode(e) for e in raw]
        mine = [e.fields for e in mine if e.fields.get("query_id") == query_id]
        assert [e["outcome"] for e in mine] == ["joined", "answered"]
        for entry in mine:
            assert entry["aggregation"] == "secure" and entry["participants"] == ",".join(NODES)
            assert len(entry["key_digest"]) == 64
        assert mine[0]["key_digest"] == mine[1]["key_digest"]
        assert "discrete-gaussian honest=3 delta=1e-9" in mine[1]["noise"]
        value = recorded_share(tmp_path, node, "alice", query_id).vector[0]
        for entry in mine:  # no member is the value, as a number or as text (digests aside)
            assert set(entry) <= DECISION_MEMBERS, set(entry) - DECISION_MEMBERS
            assert value not in entry.values() and str(value) not in entry.values()
        # the noise member is the share's parameters (scales, sensitivities, bits), nothing else
        assert mine[1]["noise"] == noise_summary(recorded_share(tmp_path, node, "alice", query_id))


def test_the_auditors_check_accepts_a_secure_log_and_counts_its_secure_releases(
    fed: Federation, tmp_path: Path
) -> None:
    """Property: a node's log of secure-aggregated queries (joins, answers, a retry) passes the
    auditor's compliance check against the agreement, and the report counts the secure releases."""
    client = fed.client()
    query_id = str(uuid.uuid4())
    client.query_release("SELECT COUNT(*) AS n FROM census", "1/4", query_id=query_id)
    client.query_release("SELECT COUNT(*) AS n FROM census", "1/4", query_id=query_id)  # a retry
    client.query_release(SQL, "1/4")
    held = tmp_path / "auditor"
    held.mkdir()
    shutil.copyfile(tmp_path / "agreements" / "open-county.toml", held / "open.toml")
    agreements = load_agreements_for_check(held)
    with StateReader(tmp_path / "state" / "county.sqlite3", "county") as reader:
        entries = [(i, decode(e)) for i, e in enumerate(reader.log_entries(0, reader.log_size()))]
    result = check_entries(entries, agreements, node="county")
    assert result.ok and result.answered == 2, result.violations
    outcomes = [e.fields.get("outcome") for _, e in entries]
    assert outcomes.count("joined") == 3 and outcomes.count("answered-again") == 1
    line = next(li for li in summarise(entries).lines if li.analyst == "alice")
    assert (line.answered, line.secure, line.answered_again) == (2, 2, 1)


def test_turning_secure_aggregation_off_never_hands_out_a_recorded_share(
    fed: Federation, pki: TestPki, tmp_path: Path
) -> None:
    """Property: after an operator turns secure aggregation off for a dataset, a coordinator asking
    the node for a plain answer under an id answered by secure aggregation (the analyst's request,
    signed again) gets a refusal, never the node's recorded, unmasked noisy share."""
    query_id = str(uuid.uuid4())
    fed.client().query_release("SELECT COUNT(*) AS n FROM census", "1", query_id=query_id)
    port = fed.nodes["county"].port
    fed.stop_node("county")
    path = tmp_path / "county.toml"
    config = load_node_config(path)
    (census,) = config.datasets
    plain = dataclasses.replace(
        census, secure_aggregation=False, holders=(), schema=dataclasses.replace(census.schema, secure=None)
    )
    write_node_config(dataclasses.replace(config, datasets=(plain,)), path)
    running = start_node(load_node_config(path), listen=f"127.0.0.1:{port}")
    try:
        channel, stub = fed.node_stub("county")
        again = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census", "1", query_id)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Answer(node_pb2.AnswerRequest(query=convert.signed_query_to_pb(again)), timeout=20)
        channel.close()
        assert _reason(caught.value) == "QUERY_ID_REUSED"
        assert b'"vector"' not in (caught.value.details() or "").encode()
    finally:
        running.stop(grace=0)


def test_holders_that_disagree_are_not_combined(tmp_path: Path, pki: TestPki) -> None:
    """Property: holders declaring different settings (here honest_nodes) are not combined: the
    analyst is told each one's setting."""
    link_certs(tmp_path, pki)
    configs = secure_node_configs(tmp_path)
    other = tmp_path / "other"
    link_certs(other, pki)
    mixed = secure_node_configs(other, honest=2)
    mixed["county"] = configs["county"]
    fed = start_federation(other, pki, mixed)
    try:
        with pytest.raises(Unavailable, match="different secure aggregation settings"):
            fed.client(retries=0).query_release("SELECT COUNT(*) AS n FROM census", "1")
    finally:
        fed.stop()


def test_a_plain_answer_of_a_secure_dataset_is_refused(fed: Federation, pki: TestPki) -> None:
    """Property: a coordinator cannot ask a node for its own noisy answer of a secure dataset."""
    _, stub = fed.node_stub("county")
    signed = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Answer(node_pb2.AnswerRequest(query=convert.signed_query_to_pb(signed)), timeout=20)
    assert _reason(caught.value) == "SECURE_AGGREGATION_REQUIRED"


def test_the_participants_are_exactly_the_holders(fed: Federation, pki: TestPki, tmp_path: Path) -> None:
    """Property: a node takes part only with exactly the dataset's declared holders: a coordinator
    can neither leave an honest holder out (a subset) nor bring in nodes of its choosing, even nodes
    with real federation certificates whose key shares it signs itself (it could then remove their
    masks and isolate the node's share)."""
    mallory = Mallory(fed)
    signed = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census")
    for participants in (
        ("county", "district-a"),
        ("county", "evil-1", "evil-2"),
        ("county", "district-a", "district-b", "evil-1"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            mallory.join(signed, "county", participants)
        assert _reason(caught.value) == "PARTICIPANTS_NOT_HOLDERS", participants
    assert mallory.join(signed, "county", NODES).node == "county"


def test_a_query_id_keeps_its_participants_when_the_holders_change(
    fed: Federation, pki: TestPki, tmp_path: Path
) -> None:
    """Property: a node never sends shares of one query id for two participant sets: after an
    operator changes the dataset's holders, a retry of a query answered before is refused
    (PARTICIPANTS_CHANGED), by the join's record and, with that record lost (a power cut can lose
    it: it is not waited for on disk), by the participant set recorded durably with the share."""
    mallory = Mallory(fed)
    signed = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census")
    mallory.round(signed)
    port = fed.nodes["county"].port
    fed.stop_node("county")
    path = tmp_path / "county.toml"
    config = load_node_config(path)
    (census,) = config.datasets
    assert census.schema.secure is not None
    holders = (*NODES, "district-c")
    secure = dataclasses.replace(census.schema.secure, holders=holders)
    widened = dataclasses.replace(
        census, holders=holders, schema=dataclasses.replace(census.schema, secure=secure)
    )
    write_node_config(dataclasses.replace(config, datasets=(widened,)), path)
    for lose_the_join in (False, True):
        if lose_the_join:
            with sqlite3.connect(tmp_path / "state" / "county.sqlite3") as con:
                con.execute("DELETE FROM secure_participants")
        running = start_node(load_node_config(path), listen=f"127.0.0.1:{port}")
        try:
            channel, stub = fed.node_stub("county")
            request = node_pb2.SecureJoinRequest(
                query=convert.signed_query_to_pb(signed), participants=holders
            )
            with pytest.raises(grpc.RpcError) as caught:
                stub.JoinSecureAggregation(request, timeout=20)
            channel.close()
            assert _reason(caught.value) == "PARTICIPANTS_CHANGED", lose_the_join
        finally:
            running.stop(grace=0)


def test_keys_that_are_altered_swapped_or_not_the_nodes_own_are_refused(
    fed: Federation, pki: TestPki
) -> None:
    """Property: round 2 is refused when the coordinator alters a key share, hands out a key share
    of another attempt, leaves one out, or signs one itself."""
    mallory = Mallory(fed)
    signed = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census")
    keys = [mallory.join(signed, n, NODES) for n in NODES]
    other = mallory.join(signed, "district-b", NODES)  # a second attempt: district-b's new key
    flipped = bytes([keys[1].public_key[0] ^ 1]) + keys[1].public_key[1:]
    cases = {
        "altered": [keys[0], dataclasses.replace(keys[1], public_key=flipped), keys[2]],
        "dropped": keys[:2],
        "foreign": [keys[0], dataclasses.replace(keys[1], certificate=keys[0].certificate), keys[2]],
    }
    for name, bad in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            mallory.answer(signed, "county", bad)
        assert _reason(caught.value) in ("SECURE_KEYS_INVALID", "PARTICIPANT_NOT_TRUSTED"), name
    with pytest.raises(grpc.RpcError) as caught:  # district-b no longer holds the key of attempt 1
        mallory.answer(signed, "district-b", keys)
    assert _reason(caught.value) == "SECURE_SESSION_UNKNOWN"
    fresh = [keys[0], keys[1], other]
    shares = [mallory.answer(signed, n, fresh) for n in NODES]
    with pytest.raises(grpc.RpcError) as caught:  # once answered, county keeps to those keys
        mallory.answer(signed, "county", keys)
    assert _reason(caught.value) in ("SECURE_KEYS_CHANGED", "SECURE_SESSION_UNKNOWN")
    verifier = node_verifier(pki.coordinator)
    release = combine_shares(shares, verifier, _decode(shares[0]).query_id, NODES, transcript(fresh))
    assert release.aggregation == "secure"


def test_dropped_altered_or_replayed_shares_give_an_error_never_an_answer(
    fed: Federation, pki: TestPki
) -> None:
    """Property: the sum is formed only from one signed share of each participant, all masked under
    one transcript: a share dropped, altered (even by one bit) or replayed from another attempt is
    an error, never a wrong or more revealing answer; and the analyst's client redoes the check."""
    mallory = Mallory(fed)
    verifier = node_verifier(pki.coordinator)
    signed = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census")
    query_id = QueryPayload.decode(signed.payload).query_id
    keys, shares = mallory.round(signed)
    good = combine_shares(shares, verifier, query_id, NODES, transcript(keys))
    _, shares2 = mallory.round(signed)  # a second attempt: same values, other masks
    assert combine_shares(shares2, verifier, query_id, NODES).rows == good.rows
    body = bytearray(shares[1].body)
    at = body.index(b'"vector":[') + 10
    body[at] = ord("1") if body[at] != ord("1") else ord("2")
    attacks = {
        "dropped": shares[:2],
        "duplicated": [shares[0], shares[0], shares[2]],
        "altered": [shares[0], dataclasses.replace(shares[1], body=bytes(body)), shares[2]],
        "replayed": [shares[0], shares2[1], shares[2]],
        "resigned": [shares[0], dataclasses.replace(shares[1], certificate=shares[0].certificate), shares[2]],
    }
    for name, attack in attacks.items():
        with pytest.raises((IntegrityError, PermissionDenied)):
            combine_shares(attack, verifier, query_id, NODES)
            pytest.fail(f"{name} was combined")


def test_the_analysts_client_accepts_only_the_sum_of_its_own_querys_shares(
    fed: Federation, pki: TestPki, tmp_path: Path
) -> None:
    """Property: the analyst's client redoes the combination from the signed shares and refuses
    (IntegrityError, never an answer) a reported sum they do not give, an answer to another query
    id, epsilon or agreement, shares answering another request, and an answer without shares; with
    require_secure it refuses an answer that did not come by secure aggregation."""
    mallory = Mallory(fed)
    verifier = node_verifier(pki.coordinator)
    signed = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census")
    payload = QueryPayload.decode(signed.payload)
    request, digest = payload.request(), payload.request_digest().hex()
    keys, shares = mallory.round(signed)
    good = combine_shares(shares, verifier, payload.query_id, NODES, transcript(keys), digest)
    client = fed.client()
    assert client._checked_secure(good, request, digest) == good
    estimate = good.rows[0].cells[0].estimate
    changed = Cell(dataclasses.replace(estimate, value=estimate.value + 1))
    other = sign(pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census WHERE age > 60")
    other_payload = QueryPayload.decode(other.payload)
    forgeries = {
        "another sum": (
            dataclasses.replace(good, rows=(dataclasses.replace(good.rows[0], cells=(changed,)),)),
            request,
        ),
        "another query id": (dataclasses.replace(good, query_id="another"), request),
        "another epsilon": (good, dataclasses.replace(request, epsilon=Epsilon.parse("1/2"))),
        "no shares": (dataclasses.replace(good, shares=()), request),
    }
    for name, (release, asked) in forgeries.items():
        with pytest.raises(IntegrityError):
            client._checked_secure(release, asked, digest)
            pytest.fail(name)
    with pytest.raises(IntegrityError, match="another request"):  # another query's shares, same id
        client._checked_secure(good, request, other_payload.request_digest().hex())

    plain_root = tmp_path / "plain"
    copy_census(plain_root, PUMS_PID)
    link_certs(plain_root, pki)
    configs = {
        n: write_node(plain_root, node_config(plain_root, n, [pums_dataset(plain_root, "census", PUMS_PID)]))
        for n in NODES
    }
    plain = start_federation(plain_root, pki, configs)
    try:
        assert (
            plain.client().query_release("SELECT COUNT(*) AS n FROM census", "1").aggregation == "independent"
        )
        with pytest.raises(IntegrityError, match="require_secure"):
            plain.client().query_release("SELECT COUNT(*) AS n FROM census", "1", require_secure=True)
    finally:
        plain.stop()


def test_a_node_that_dies_mid_protocol_fails_the_query_cleanly_and_a_retry_succeeds(
    fed: Federation, tmp_path: Path
) -> None:
    """Property: a participant that is gone between the rounds fails the query with a clear error
    naming it (nothing released); once it is back, retrying the same id answers from the shares
    recorded the first time (charged once)."""
    mallory = Mallory(fed)
    client = fed.client(retries=0)
    query_id = str(uuid.uuid4())
    signed = sign(fed.pki.analyst("alice"), "SELECT COUNT(*) AS n FROM census", query_id=query_id)
    keys = [mallory.join(signed, n, NODES) for n in NODES]
    county = mallory.answer(signed, "county", keys)
    port = fed.nodes["district-b"].port
    fed.stop_node("district-b")
    district_a = mallory.answer(signed, "district-a", keys)
    with pytest.raises(IntegrityError, match="missing: district-b"):
        combine_shares([county, district_a], node_verifier(fed.pki.coordinator), query_id, NODES)
    with pytest.raises(PartialFailure, match="district-b"):
        client.query_release("SELECT COUNT(*) AS n FROM census", "1", query_id=query_id)
    fed.nodes["district-b"] = start_node(
        load_node_config(tmp_path / "district-b.toml"), listen=f"127.0.0.1:{port}"
    )
    fed._stopped.discard("district-b")
    recorded = recorded_share(tmp_path, "county", "alice", query_id)
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:  # as an analyst retries: the coordinator sees the node again within seconds
        try:
            release = client.query_release("SELECT COUNT(*) AS n FROM census", "1", query_id=query_id)
            break
        except PartialFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    total = sum(recorded_share(tmp_path, n, "alice", query_id).vector[0] for n in NODES)
    assert release.rows[0].cells[0].estimate.value == total
    assert recorded_share(tmp_path, "county", "alice", query_id) == recorded
    with StateReader(tmp_path / "state" / "county.sqlite3", "county") as reader:
        assert reader.spent("open", "alice").analyst.value == 1
