"""The audit log end to end, through real servers over mTLS: nodes sign checkpoints and witness
each other; an auditor (auditor certificate) fetches a node's log incrementally, verifies it
offline with the witness policy, checks it against the agreements and reports; the audit service
refuses every other role; a node that rolls its log back or forks it is caught by its witness and
by the auditor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from accord.auditor.fetch import fetch
from accord.errors import DataError
from accord.node import audit_servicer
from accord.node.config import load_node_config
from accord.node.server import start_node
from accord.node.state import SqliteState, StateReader
from accord.policies.audit_entry import decode
from accord.policies.identity import Identity
from accord.policies.note import NoteVerifier
from accord.protos.v1 import audit_pb2, audit_pb2_grpc
from accord.rpc.transport import TlsFiles, secure_channel
from tests.conftest import TestPki
from tests.integration.audit_federation import (
    AuditSetup,
    audit_setup,
    auditor_tls,
    start_audited,
    wait_for,
)
from tests.integration.federation import TIMEOUT, Federation
from tests.rooms import ROOT

SQL = "SELECT COUNT(*) AS n FROM pums"


def _entries(state_path: Path, node: str) -> list[dict[str, object]]:
    with SqliteState(state_path, node) as state:
        return [dict(decode(e).fields) for e in state.log_entries(0, state.log_size())]


def _accord(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def audited(tmp_path: Path, pki: TestPki) -> Iterator[tuple[AuditSetup, Federation]]:
    setup = audit_setup(tmp_path, pki)
    fed = start_audited(setup, pki)
    try:
        yield setup, fed
    finally:
        fed.stop()


def _cosigned_by(fed_dir: Path, key: str) -> bool:
    name = NoteVerifier.from_vkey(key).name
    return any(f"\u2014 {name} " in p.read_text() for p in (fed_dir / "checkpoints").glob("*.note"))


def test_the_auditors_workflow_end_to_end(
    audited: tuple[AuditSetup, Federation], pki: TestPki, tmp_path: Path
) -> None:
    """Property: after answered and refused queries, an auditor fetches county's log (checkpoints
    cosigned by district), verifies it offline with district as the required witness, finds every
    answer allowed by the agreements, and reports the epsilon spent; a second fetch is incremental,
    and one after a fetch killed half-way drops what that one left uncommitted;
    the log holds decisions, the start-up and the agreements, never an SQL text or a value."""
    setup, fed = audited
    with fed.client() as client:
        for _ in range(3):
            client.query_release(SQL, "1/2")
        with pytest.raises(Exception):  # noqa: B017 (any refusal: it must be logged)
            client.query_release("SELECT SUM(nosuch) FROM pums", "1/2")
    directory = tmp_path / "county-log"
    tls = auditor_tls(pki)

    def cosigned() -> bool:
        fetch("county", setup.addresses["county"], tls, directory, setup.keys["county"])
        return _cosigned_by(directory, setup.witness_keys["district-a"]) and (
            # the latest checkpoint (the whole log) cosigned too
            _verify(directory, setup).returncode == 0
        )

    wait_for(cosigned, "district's cosignature of county's latest checkpoint")
    verified = _verify(directory, setup)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK:") and "quorum 1 of 1 witness" in verified.stdout
    fields = [json.loads(line) for line in (directory / "entries.jsonl").read_bytes().splitlines()]
    types = {f["type"] for f in fields}
    assert {"start", "agreement", "decision"} <= types
    answered = [f for f in fields if f["type"] == "decision" and f["outcome"] == "answered"]
    refused = [f for f in fields if f["type"] == "decision" and f["outcome"] == "refused"]
    assert len(answered) == 3 and all(f["epsilon"] == "1/2" and f["analyst"] == "alice" for f in answered)
    assert refused and all(f["reason"] for f in refused)
    assert all(len(f["release_digest"]) == 64 and len(f["envelope_digest"]) == 64 for f in answered)
    assert b"SELECT" not in (directory / "entries.jsonl").read_bytes()
    held = tmp_path / "county-agreements"  # the auditor's copy of what county signed up to
    held.mkdir()
    shutil.copyfile(setup.root / "agreements" / "open-county.toml", held / "open-county.toml")
    checked = _accord("audit", "check", directory, "--agreements", held)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 not allowed" in checked.stdout
    report = _accord("audit", "report", directory, "--format", "json", "--agreements", held)
    assert report.returncode == 0, report.stderr
    assert "3/2" in report.stdout or "1.5" in report.stdout
    before = (directory / "entries.jsonl").read_bytes()
    with fed.client() as client:
        client.query_release(SQL, "1/4")
    again = fetch("county", setup.addresses["county"], tls, directory)
    assert again.new_entries >= 1 and (directory / "entries.jsonl").read_bytes().startswith(before)
    # A fetch killed after writing entries but before their hashes and commit: the next one cuts
    # the uncommitted bytes off instead of counting them, and the copy verifies.
    committed = (directory / "entries.jsonl").read_bytes()
    with (directory / "entries.jsonl").open("ab") as f:
        f.write(committed.splitlines(keepends=True)[-1])
    fetch("county", setup.addresses["county"], tls, directory)
    assert (directory / "entries.jsonl").read_bytes().startswith(committed)
    recovered = _verify(directory, setup)
    assert recovered.returncode == 0, recovered.stdout


def _verify(directory: Path, setup: AuditSetup, *more: str) -> subprocess.CompletedProcess[str]:
    return _accord(
        "audit",
        "verify",
        directory,
        "--key",
        setup.keys["county"],
        "--witness",
        setup.witness_keys["district-a"],
        *more,
    )


def _audit_stub(
    address: str, tls: TlsFiles, node: str
) -> tuple[grpc.Channel, audit_pb2_grpc.AuditServiceStub]:
    channel = secure_channel(address, tls, Identity("node", node))
    return channel, audit_pb2_grpc.AuditServiceStub(channel)


CALLS = {
    "GetCheckpoint": audit_pb2.GetCheckpointRequest(),
    "ListCheckpoints": audit_pb2.ListCheckpointsRequest(),
    "GetEntries": audit_pb2.GetEntriesRequest(start=0, end=1),
    "GetInclusionProof": audit_pb2.InclusionProofRequest(index=0, size=1),
    "GetConsistencyProof": audit_pb2.ConsistencyProofRequest(size1=1, size2=1),
    "AddCosignature": audit_pb2.AddCosignatureRequest(),
}


def test_the_audit_service_is_open_to_auditors_only(
    audited: tuple[AuditSetup, Federation], pki: TestPki
) -> None:
    """Property: analysts and coordinators are refused every audit method (PERMISSION_DENIED, before
    any service code); another node may only fetch checkpoints and consistency proofs and hand back
    a cosignature; an auditor may read everything but cannot cosign; an auditor cannot query."""
    setup, _ = audited
    address = setup.addresses["county"]
    for tls in (pki.analyst(), pki.coordinator):
        channel, stub = _audit_stub(address, tls, "county")
        with channel:
            for method, request in CALLS.items():
                with pytest.raises(grpc.RpcError) as err:
                    getattr(stub, method)(request, timeout=TIMEOUT)
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
    channel, stub = _audit_stub(address, pki.node("district-a"), "county")
    with channel:
        for method in ("ListCheckpoints", "GetEntries", "GetInclusionProof"):
            with pytest.raises(grpc.RpcError) as err:
                getattr(stub, method)(CALLS[method], timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
        assert stub.GetCheckpoint(CALLS["GetCheckpoint"], timeout=TIMEOUT).note
    channel, stub = _audit_stub(address, auditor_tls(pki), "county")
    with channel:
        assert stub.GetEntries(CALLS["GetEntries"], timeout=TIMEOUT).entries
        with pytest.raises(grpc.RpcError) as err:
            stub.AddCosignature(CALLS["AddCosignature"], timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    from accord.protos.v1 import node_pb2, node_pb2_grpc

    channel = secure_channel(address, auditor_tls(pki), Identity("node", "county"))
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            node_pb2_grpc.NodeServiceStub(channel).GetCatalog(node_pb2.GetCatalogRequest(), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_rolled_back_and_forked_log_is_caught_by_witness_and_auditor(tmp_path: Path, pki: TestPki) -> None:
    """Property: county's state is restored from an older backup (its log rolled back) and it goes on
    with a different history. district, which cosigned the longer log, refuses to cosign, records
    a ``witness`` entry in its own log naming county (rolled back); the auditor's next fetch
    refuses the rolled back checkpoint and keeps it as evidence; verify then fails. When county's
    other history grows past what district cosigned, its consistency proof fails: district records
    a fork and still cosigns nothing."""
    setup = audit_setup(tmp_path, pki)
    fed = start_audited(setup, pki)
    county_state = load_node_config(setup.configs["county"]).state.path
    assert county_state is not None
    district_state = load_node_config(setup.configs["district-a"]).state.path
    directory = tmp_path / "county-log"
    tls = auditor_tls(pki)
    try:
        fed.stop_node("county")
        backup = tmp_path / "county-backup.sqlite3"
        shutil.copyfile(county_state, backup)
        fed.nodes["county"] = start_node(load_node_config(setup.configs["county"]))
        fed._stopped.discard("county")
        with fed.client() as client:
            for _ in range(4):
                client.query_release(SQL, "1/2")

        def cosigned_latest() -> bool:
            with StateReader(district_state, "district-a") as state:
                seen = state.witnessed("county")
            latest = fetch("county", setup.addresses["county"], tls, directory, setup.keys["county"])
            return seen is not None and seen[0] == latest.size

        wait_for(cosigned_latest, "district to cosign county's longer log")
        fed.stop_node("county")
        for suffix in ("", "-wal", "-shm"):
            Path(str(county_state) + suffix).unlink(missing_ok=True)
        shutil.copyfile(backup, county_state)  # the rollback
        fed.nodes["county"] = start_node(load_node_config(setup.configs["county"]))
        fed._stopped.discard("county")

        def problems() -> list[str]:
            with StateReader(district_state, "district-a") as state:
                entries = [decode(e) for e in state.log_entries(0, state.log_size())]
            return [
                str(e.fields["problem"])
                for e in entries
                if e.type == "witness" and e.fields["log"] == "county"
            ]

        wait_for(
            lambda: any(p.startswith("rolled back") for p in problems()), "district to record the rollback"
        )
        with pytest.raises(DataError, match=r"rolled back|forked"):
            fetch("county", setup.addresses["county"], tls, directory)
        assert list((directory / "evidence").iterdir())
        assert _verify(directory, setup).returncode == 1
        with StateReader(district_state, "district-a") as state:
            seen = state.witnessed("county")
        assert seen is not None

        def county_size() -> int:
            with StateReader(county_state, "county") as state:
                return state.log_size()

        with fed.client() as client:  # county's other history grows past what district cosigned
            while county_size() <= seen[0]:
                client.query_release(SQL, "1/100")
        wait_for(lambda: any(p.startswith("forked") for p in problems()), "district to record the fork")
        with StateReader(district_state, "district-a") as state:
            assert state.witnessed("county") == seen  # it never cosigned either history since
    finally:
        fed.stop()


def test_fetch_follows_replies_cut_short_by_size(
    audited: tuple[AuditSetup, Federation], pki: TestPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property: when the node cuts GetEntries replies at a byte budget (here about one entry a
    reply), fetch asks again from where each ends and the copy is whole and verifies."""
    setup, fed = audited
    with fed.client() as client:
        client.query_release(SQL, "1/2")
    monkeypatch.setattr(audit_servicer, "MAX_BATCH_BYTES", 100)
    directory = tmp_path / "small-batches"
    result = fetch("county", setup.addresses["county"], auditor_tls(pki), directory, setup.keys["county"])
    assert result.size == result.new_entries > 3
    assert len((directory / "entries.jsonl").read_bytes().splitlines()) == result.size
    assert _accord("audit", "verify", directory, "--key", setup.keys["county"]).returncode == 0
