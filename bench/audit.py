"""Suite "audit": how long an auditor's offline verification of a node's log takes.

A log of 1,000,000 realistic decision entries (20,000 with ``--quick``) is written as ``accord
audit fetch`` leaves it (entries, leaf hashes, a signed checkpoint every 100,000 entries and at
the end), then verified with :func:`accord.policies.audit_verify.verify_dir`. The reference,
measured in the same run on the same files: reading the entries and hashing each one (SHA-256),
the least any verification must do. Reported: the seconds of each and their ratio (target: the
whole verification under 60 s for 1,000,000 entries).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from datetime import UTC, datetime, timedelta

from accord.node.config_audit import audit_origin
from accord.policies.audit_dir import AuditDir, LogInfo
from accord.policies.audit_entry import decision_entry
from accord.policies.audit_verify import verify_dir
from accord.policies.decision import Decision
from accord.policies.merkle import leaf_hash
from accord.policies.merkle_tree import Frontier
from accord.policies.note import Checkpoint, NoteSigner, SignedNote
from accord.policies.note_keys import generate_key
from bench.common import BenchConfig, Row

__all__ = ["run"]

SUITE = "audit"
TARGET_S = 60.0
EVERY = 100_000


def _entry(i: int, start: datetime) -> bytes:
    return decision_entry(
        Decision(
            node="county",
            kind="query",
            outcome="answered" if i % 7 else "refused",
            at=start + timedelta(seconds=i),
            caller="coordinator/coordinator",
            analyst=f"analyst-{i % 13}",
            query_id=f"q-{i:08d}",
            agreement="dsa-2026-07",
            purpose="HOUSING",
            dataset="residents",
            uses=(("*", "count"), ("district", "group_by")),
            epsilon="1/10" if i % 7 else "0",
            reason="" if i % 7 else "BUDGET_EXHAUSTED",
            payload_digest=hashlib.sha256(b"p%d" % i).hexdigest(),
            envelope_digest=hashlib.sha256(b"e%d" % i).hexdigest(),
            release_digest=hashlib.sha256(b"r%d" % i).hexdigest() if i % 7 else "",
        )
    )


def _write_log(cfg: BenchConfig, n: int) -> tuple[AuditDir, NoteSigner]:
    path = cfg.work / "audit-log"
    shutil.rmtree(path, ignore_errors=True)
    signer = NoteSigner(audit_origin("county"), generate_key())
    folder = AuditDir(path)
    folder.create(LogInfo("county", signer.name, signer.vkey()))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frontier = Frontier()
    entries: list[bytes] = []
    leaves: list[bytes] = []
    for i in range(n):
        raw = _entry(i, start)
        leaf = leaf_hash(raw)
        frontier.append(leaf)
        entries.append(raw)
        leaves.append(leaf)
        if frontier.size % EVERY == 0 or frontier.size == n:
            folder.append(entries, leaves)
            entries, leaves = [], []
            body = Checkpoint(signer.name, frontier.size, frontier.root()).body()
            note = SignedNote(body, (signer.sign(body),)).text()
            folder.save_checkpoint(frontier.size, frontier.root(), note)
    return folder, signer


def _reference(folder: AuditDir) -> int:
    n = 0
    for line in folder.lines():
        hashlib.sha256(b"\x00" + line[:-1]).digest()
        n += 1
    return n


def run(cfg: BenchConfig) -> list[Row]:
    n = 20_000 if cfg.quick else 1_000_000
    folder, signer = _write_log(cfg, n)
    try:
        t0 = time.perf_counter()
        assert _reference(folder) == n
        reference_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = verify_dir(folder.path, signer.verifier())
        verify_s = time.perf_counter() - t0
        if not report.ok:
            raise AssertionError(f"the benchmark's own log does not verify: {report.problems[:3]}")
    finally:
        shutil.rmtree(folder.path, ignore_errors=True)
    ratio = verify_s / reference_s
    print(f"audit verify {n:,} entries: {verify_s:.1f} s ({ratio:.1f}x reading, hashing alone)", flush=True)
    return [
        Row(SUITE, "reference-hash-only", "verify", n, median_s=reference_s),
        Row(
            SUITE,
            "accord-verify",
            "verify",
            n,
            median_s=verify_s,
            extra={"ratio": ratio, "target_s": TARGET_S, "entries_per_second": n / verify_s},
        ),
    ]
