"""``accord audit verify`` over a realistic 100-entry log of node ``county`` that witness
``district-a`` cosigned in part (tests/unit/audit_log_fixture.py builds it as a node does and
fetches it as ``accord audit fetch`` does): the pristine copy verifies; every single-bit flip of
the entries, the hashes and the checkpoint notes is caught (all of them under ``-m slow``, the
first, middle and last entries, the first and last hashes, a cosignature line and samples in the
fast suite), naming the first bad entry; truncation, reordering, deletion, insertion, a rollback,
a fork, foreign and forged checkpoints and non-canonical entries are each caught and named; the
witness policy decides which checkpoints count; and the command's exit statuses."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from accord.errors import AccordError
from accord.node.config_audit import audit_origin, witness_name
from accord.policies.audit_dir import AuditDir
from accord.policies.audit_entry import decision_entry
from accord.policies.audit_verify import VerifyReport, verify_dir
from accord.policies.decision import Decision
from accord.policies.merkle import HASH_SIZE, leaf_hash, root
from accord.policies.note import ALG_COSIGNATURE, Checkpoint, NoteSigner, Signature, SignedNote, parse_note
from tests.rooms import ROOT
from tests.unit.audit_log_fixture import (
    CHECKPOINT_SIZES,
    COSIGNED_SIZES,
    NODE,
    SIZE,
    WITNESS,
    AuditLog,
    PureMemo,
    build_log,
    cosignature_span,
    entries,
    entry_index,
    files_digest,
    run_flips,
    seeded_key,
    worker_run,
    worker_start,
)

ENTRIES = "entries.jsonl"
HASHES = "hashes.bin"
FULL_ENTRIES = (0, SIZE // 2, SIZE - 1)
"""The entries whose every bit the fast suite flips: the first, the middle and the last."""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> AuditLog:
    """The log, built and fetched once per module (every test lays its own copy)."""
    return build_log(tmp_path_factory.mktemp("audit") / "built")


@pytest.fixture
def copy(log: AuditLog, tmp_path: Path) -> Path:
    """A fresh copy of the pristine directory."""
    return log.lay(tmp_path / "copy")


@pytest.fixture
def memo(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> PureMemo:
    """Verification's pure helpers answered from a table for the pristine inputs (see PureMemo)."""
    table = PureMemo(log)
    for obj, name, value in table.patches():
        monkeypatch.setattr(obj, name, value)
    return table


def _verify(copy: Path, log: AuditLog, quorum: int = 1) -> VerifyReport:
    return verify_dir(copy, log.key, [log.cosigner] if quorum else [], quorum)


def _lines(copy: Path) -> list[bytes]:
    return (copy / ENTRIES).read_bytes().split(b"\n")[:-1]


def _write_lines(copy: Path, lines: list[bytes]) -> None:
    (copy / ENTRIES).write_bytes(b"".join(line + b"\n" for line in lines))


def _hashes(copy: Path) -> list[bytes]:
    data = (copy / HASHES).read_bytes()
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _write_hashes(copy: Path, hashes: list[bytes]) -> None:
    (copy / HASHES).write_bytes(b"".join(hashes))


def _add_checkpoint(copy: Path, body: Checkpoint, signer: NoteSigner) -> str:
    """Keep a checkpoint note ``signer`` signed in the copy, as fetch would; its file name."""
    text = SignedNote(body.body(), (signer.sign(body.body()),)).text()
    return AuditDir(copy).save_checkpoint(body.size, body.root, text).name


def _node_signer(log: AuditLog) -> NoteSigner:
    return NoteSigner(audit_origin(NODE), log.node_key)


def _has(report: VerifyReport, *fragments: str) -> bool:
    """Whether one problem holds every fragment."""
    return any(all(f in p for f in fragments) for p in report.problems)


def _range_of(report: VerifyReport, size: int) -> tuple[int, int]:
    """The range of entries a root mismatch at ``size`` names."""
    for p in report.problems:
        m = re.search(rf"root of the first {size} entries .* between (\d+) and (\d+)", p)
        if m:
            return int(m[1]), int(m[2])
    raise AssertionError(f"no root mismatch at {size} among {report.problems}")


# --- 1. The pristine copy ---------------------------------------------------------------------------


def test_the_pristine_copy_verifies_with_the_witness_required_and_without(log: AuditLog, copy: Path) -> None:
    """Property: the copy fetched from the node verifies: with district-a required (quorum 1) the
    three cosigned checkpoints are accepted and the others held but not; with no witness (quorum 0)
    all six are accepted; either way every entry is covered (verified size 100) and nothing is
    reported."""
    required = _verify(copy, log, quorum=1)
    assert required.ok, required.problems
    assert (required.entries, required.verified_size, required.first_bad_entry) == (SIZE, SIZE, None)
    assert required.notes == []
    assert [(c.checkpoint.size, c.accepted) for c in required.checkpoints] == [
        (s, s in COSIGNED_SIZES) for s in CHECKPOINT_SIZES
    ]
    assert {c.cosigned_by for c in required.checkpoints if c.accepted} == {(witness_name(WITNESS),)}
    for witnesses in ([], [log.cosigner]):
        none = verify_dir(copy, log.key, witnesses, 0)
        assert none.ok, none.problems
        assert (none.verified_size, none.notes) == (SIZE, [])
        assert all(c.accepted for c in none.checkpoints) and len(none.checkpoints) == len(CHECKPOINT_SIZES)
    assert (copy / ENTRIES).read_bytes() == b"".join(e + b"\n" for e in entries())
    assert (copy / HASHES).read_bytes() == b"".join(leaf_hash(e) for e in entries())


# --- 2. Every bit of the entries ----------------------------------------------------------------------


def test_every_bit_of_three_entries_and_a_sample_of_the_rest_flipped_is_caught_at_its_entry(
    log: AuditLog, copy: Path, memo: PureMemo
) -> None:
    """Property: flipping any one bit of the first, the middle or the last entry (its newline
    included), or one random bit at each of 300 other random byte positions, makes verify_dir
    report a problem whose first bad entry is the entry holding the bit (whether the flip keeps
    the line structure or breaks or joins lines). Every 199th flip is verified again without the
    table of pure results, with the same report."""
    data = log.files[ENTRIES]
    ends = [i for i, b in enumerate(data) if b == ord("\n")]
    starts = [0, *(e + 1 for e in ends[:-1])]
    full = [bit for k in FULL_ENTRIES for bit in range(8 * starts[k], 8 * (ends[k] + 1))]
    covered = {b // 8 for b in full}
    rng = random.Random(0)
    others = rng.sample([p for p in range(len(data)) if p not in covered], 300)
    sample = [8 * p + rng.randrange(8) for p in sorted(others)]
    count, failures = run_flips(log, copy, ENTRIES, full + sample, memo, compare_every=199)
    assert failures == [], f"{len(failures)} of {count} flips: {failures[:10]}"
    assert count == len(full) + 300 and len(full) == 8 * sum(len(entries()[k]) + 1 for k in FULL_ENTRIES)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_bit_of_the_entries_flipped_is_caught_at_its_entry(log: AuditLog, tmp_path: Path) -> None:
    """Property: flipping any one of the 398,056 bits of entries.jsonl makes verify_dir report a
    problem whose first bad entry is the entry holding the bit (see flip_failure)."""
    _exhaustive(log, tmp_path, [ENTRIES])


# --- 3. Every bit of the hashes and of the checkpoints ----------------------------------------------


def test_every_bit_of_the_first_and_last_hash_and_a_sample_flipped_is_caught(
    log: AuditLog, copy: Path, memo: PureMemo
) -> None:
    """Property: flipping any bit of the first or the last leaf hash, or one random bit of each of
    64 other random hash bytes, makes verify_dir report that hashes.bin was changed at the entry
    whose recorded hash it is (the entries still give every root)."""
    last = 8 * HASH_SIZE * (SIZE - 1)
    rng = random.Random(0)
    middle = rng.sample(range(HASH_SIZE, HASH_SIZE * (SIZE - 1)), 64)
    bits = [
        *range(8 * HASH_SIZE),
        *range(last, last + 8 * HASH_SIZE),
        *(8 * p + rng.randrange(8) for p in middle),
    ]
    count, failures = run_flips(log, copy, HASHES, bits, memo, compare_every=53)
    assert failures == [], f"{len(failures)} of {count} flips: {failures[:10]}"
    assert count == 2 * 8 * HASH_SIZE + 64


def test_every_bit_of_a_cosignature_line_and_a_sample_of_the_notes_flipped_is_caught(
    log: AuditLog, copy: Path, memo: PureMemo
) -> None:
    """Property: with district-a required (quorum 1), flipping any bit of the cosignature line of
    the checkpoint of 64 entries, or one random bit at 40 random positions of every checkpoint
    note, either makes verify_dir report a problem or (a flip in a cosignature line only) leaves
    that checkpoint no longer accepted, and a note then names the entries it alone covered."""
    rel64 = log.checkpoint_name(64)
    span = cosignature_span(log.files[rel64])
    count, failures = run_flips(
        log, copy, rel64, range(8 * span.start, 8 * span.stop), memo, compare_every=41
    )
    rng = random.Random(0)
    for size in CHECKPOINT_SIZES:
        rel = log.checkpoint_name(size)
        bits = [8 * p + rng.randrange(8) for p in rng.sample(range(len(log.files[rel])), 40)]
        n, more = run_flips(log, copy, rel, bits, memo, compare_every=11)
        count, failures = count + n, failures + more
    assert failures == [], f"{len(failures)} of {count} flips: {failures[:10]}"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_bit_of_the_hashes_and_of_every_checkpoint_flipped_is_caught(
    log: AuditLog, tmp_path: Path
) -> None:
    """Property: flipping any one bit of hashes.bin, or of any checkpoint note, is caught as the
    fast tests above say (see flip_failure)."""
    _exhaustive(log, tmp_path, [HASHES, *(log.checkpoint_name(s) for s in CHECKPOINT_SIZES)])


def _exhaustive(log: AuditLog, tmp_path: Path, files: list[str]) -> None:
    """Flip every bit of ``files`` in worker processes (each builds the same log: the keys are
    seeded), all failures reported together."""
    tasks = [
        (rel, start, min(start + 4000, 8 * len(log.files[rel])))
        for rel in files
        for start in range(0, 8 * len(log.files[rel]), 4000)
    ]
    workers = max(1, min(os.cpu_count() or 1, 8))
    context = multiprocessing.get_context("spawn")
    count, failures = 0, list[str]()
    with context.Pool(workers, worker_start, (str(tmp_path), files_digest(log.files))) as pool:
        for n, more in pool.imap_unordered(worker_run, tasks):
            count, failures = count + n, failures + more
    assert count == sum(8 * len(log.files[rel]) for rel in files)
    assert failures == [], f"{len(failures)} of {count} flips: {sorted(failures)[:20]}"


def test_a_cosignature_that_does_not_verify_is_a_problem_one_of_another_key_is_ignored(
    log: AuditLog, copy: Path
) -> None:
    """Property: a cosignature line under the witness's name and key ID whose signature does not
    verify (its time or signature bytes changed) is a problem; a line whose name or key ID no longer
    is the witness's is a line of some other key, ignored as the signed-note spec says: the
    checkpoint then simply lacks district-a's cosignature, so with quorum 1 it is no longer
    accepted (the verified size falls back to 64 and a note names entries 64 to 99)."""
    rel = log.checkpoint_name(100)
    note = parse_note(log.files[rel])
    cosig = next(s for s in note.signatures if s.name == witness_name(WITNESS))
    others = tuple(s for s in note.signatures if s is not cosig)
    changed_time = Signature(cosig.name, cosig.key_id, bytes([cosig.signature[0] ^ 1]) + cosig.signature[1:])
    (copy / rel).write_text(SignedNote(note.body, (*others, changed_time)).text(), encoding="utf-8")
    report = _verify(copy, log)
    assert not report.ok
    assert _has(report, rel.split("/")[1], f"a cosignature of {witness_name(WITNESS)} does not verify")
    other_id = Signature(cosig.name, bytes([cosig.key_id[0] ^ 1]) + cosig.key_id[1:], cosig.signature)
    (copy / rel).write_text(SignedNote(note.body, (*others, other_id)).text(), encoding="utf-8")
    report = _verify(copy, log)
    assert report.ok, report.problems
    assert [c.accepted for c in report.checkpoints if c.checkpoint.size == 100] == [False]
    assert report.verified_size == 64
    assert report.notes == [
        f"checkpoint {rel.split('/')[1]}: a signature line names witness {witness_name(WITNESS)} but not its "
        f"key (key ID {other_id.key_id.hex()}): not counted",
        "entries 64 to 99 are not covered by an accepted checkpoint yet (fetch again later)",
    ]


# --- 4. What a changed copy looks like ----------------------------------------------------------------


def test_entries_truncated_are_caught(log: AuditLog, copy: Path) -> None:
    """Property: removing the last 10 entries from entries.jsonl (hashes left) is reported as
    entries removed and a truncated copy; cutting both files to 70 entries as a truncated copy that
    two checkpoints cover beyond; cutting the last line short names entry 99 as the first bad."""
    _write_lines(copy, _lines(copy)[:90])
    report = _verify(copy, log)
    assert not report.ok
    assert _has(report, "entries.jsonl holds 90 entries but 100 were fetched: entries were removed")
    assert _has(
        report, log.checkpoint_name(100).split("/")[1], "covers 100 entries but the copy holds only 90"
    )
    assert report.first_bad_entry is None  # no entry held is bad: the missing ones are named above

    _write_lines(copy, _lines(copy)[:70])
    _write_hashes(copy, _hashes(copy)[:70])
    report = _verify(copy, log)
    assert [p for p in report.problems if "truncated" in p] == [
        f"checkpoint {log.checkpoint_name(s).split('/')[1]} covers {s} entries but the copy holds only 70: "
        "the copy was truncated"
        for s in (90, 100)
    ]
    assert len(report.problems) == 2 and report.first_bad_entry is None

    copy2 = log.lay(copy.parent / "cut")
    (copy2 / ENTRIES).write_bytes(log.files[ENTRIES][:-20])
    report = _verify(copy2, log)
    assert report.first_bad_entry == SIZE - 1
    assert _has(report, "entry 99: the last line is cut short (no newline)")


def test_hashes_cut_mid_hash_are_caught(log: AuditLog, copy: Path) -> None:
    """Property: hashes.bin cut in the middle of a hash is reported as cut, and the entry left
    without its hash is the first bad entry."""
    (copy / HASHES).write_bytes(log.files[HASHES][:-10])
    report = _verify(copy, log)
    assert _has(report, f"hashes.bin is {32 * SIZE - 10} bytes, not a whole number of hashes: it was cut")
    assert report.first_bad_entry == SIZE - 1
    assert _has(report, "entry 99: no hash was recorded for it when fetched")


def test_two_entries_swapped_are_caught(log: AuditLog, copy: Path) -> None:
    """Property: swapping entries 30 and 50 in entries.jsonl names entry 30 as the first bad entry
    (its bytes are not those fetched); swapping them in both files (hashes too) gives no entry a
    wrong hash but the root at 40 (and after) no longer matches, naming entries 17 to 39."""
    lines = _lines(copy)
    lines[30], lines[50] = lines[50], lines[30]
    _write_lines(copy, lines)
    report = _verify(copy, log)
    assert report.first_bad_entry == 30
    assert _has(report, "entry 30: its bytes differ from those fetched")
    assert _has(report, "entry 50: its bytes differ from those fetched")

    hashes = _hashes(copy)
    hashes[30], hashes[50] = hashes[50], hashes[30]
    _write_hashes(copy, hashes)
    report = _verify(copy, log)
    assert not report.ok and report.first_bad_entry is None
    assert _range_of(report, 40) == (17, 39)
    assert all(_range_of(report, s)[0] <= 30 for s in (40, 64, 90, 100))
    assert not _has(report, "root of the first 17 entries")


def test_an_entry_deleted_in_the_middle_is_caught(log: AuditLog, copy: Path) -> None:
    """Property: deleting entry 50 from entries.jsonl names entry 50 as the first bad entry and
    says entries were removed; deleting it from both files is caught by the roots at 64 and 90
    (entries 40 to 63 named) and by the checkpoint of 100 that the 99 entries left cannot meet."""
    lines = _lines(copy)
    del lines[50]
    _write_lines(copy, lines)
    report = _verify(copy, log)
    assert report.first_bad_entry == 50
    assert _has(report, "entries.jsonl holds 99 entries but 100 were fetched: entries were removed")

    hashes = _hashes(copy)
    del hashes[50]
    _write_hashes(copy, hashes)
    report = _verify(copy, log)
    assert not report.ok and report.first_bad_entry is None
    assert _range_of(report, 64) == (40, 63) and _range_of(report, 90) == (40, 89)
    assert _has(report, "covers 100 entries but the copy holds only 99: the copy was truncated")


def _forged_entry() -> bytes:
    """A valid, canonical decision the node never took: mallory answered, epsilon 5."""
    at = datetime(2026, 3, 2, 9, 31, tzinfo=UTC)
    forged = Decision(NODE, "query", "answered", at, "coordinator", "mallory", "q-x", "dsa-1", "P-1")
    return decision_entry(replace(forged, uses=(("income", "sum"),), epsilon="5", release_digest="ab" * 32))


def test_an_entry_inserted_is_caught(log: AuditLog, copy: Path) -> None:
    """Property: a valid, canonical entry inserted at 50 in entries.jsonl names entry 50 as the
    first bad entry and entry 100 as one fetched without a hash; inserted in both files, the roots
    at 64 and after no longer match (entries 40 to 63 named)."""
    lines = _lines(copy)
    lines.insert(50, _forged_entry())
    _write_lines(copy, lines)
    report = _verify(copy, log)
    assert report.first_bad_entry == 50
    assert _has(report, "entry 100: no hash was recorded for it when fetched (added afterwards?)")

    hashes = _hashes(copy)
    hashes.insert(50, leaf_hash(_forged_entry()))
    _write_hashes(copy, hashes)
    report = _verify(copy, log)
    assert not report.ok
    assert _range_of(report, 64) == (40, 63)
    assert not _has(report, "root of the first 40 entries")


def test_a_rolled_back_copy_is_caught(log: AuditLog, copy: Path) -> None:
    """Property: entries and hashes cut back to 64 entries (an older checkpoint's size) while the
    checkpoints of 90 and 100 are kept is a truncated copy, named by both checkpoints."""
    _write_lines(copy, _lines(copy)[:64])
    _write_hashes(copy, _hashes(copy)[:64])
    report = _verify(copy, log)
    assert not report.ok
    for size in (90, 100):
        name = log.checkpoint_name(size).split("/")[1]
        assert _has(report, name, f"covers {size} entries but the copy holds only 64: the copy was truncated")


def test_two_checkpoints_for_one_size_are_caught_as_two_histories(log: AuditLog, copy: Path) -> None:
    """Property: a second checkpoint of 64 entries, correctly signed by the node's key but over
    another history (entry 10 differs), is reported as the node showing two histories, and its root
    does not match the entries."""
    other = list(entries())
    other[10] = _forged_entry()
    forked = Checkpoint(audit_origin(NODE), 64, root([leaf_hash(e) for e in other[:64]]))
    name = _add_checkpoint(copy, forked, _node_signer(log))
    report = _verify(copy, log)
    assert not report.ok
    genuine = log.checkpoint_name(64).split("/")[1]
    two = "two different roots for the same 64 entries: the node showed two histories"
    assert _has(report, "checkpoints ", genuine, name, "are both signed by the node", two)
    assert _has(report, f"checkpoint {name}: the root of the first 64 entries is not its root")


def test_a_checkpoint_of_another_key_or_origin_is_caught(log: AuditLog, tmp_path: Path) -> None:
    """Property: a checkpoint under the node's origin but signed by another key, one signed by
    another node's key for that node's origin, and one the node's key signed for another origin
    are each reported (not signed by the node's key; of another origin)."""
    true_root = root([leaf_hash(e) for e in entries()[:50]])
    impostor = NoteSigner(audit_origin(NODE), seeded_key("impostor"))
    district = NoteSigner(audit_origin(WITNESS), log.witness_key)
    cases = [
        (
            Checkpoint(audit_origin(NODE), 50, true_root),
            impostor,
            "it is not signed by county.node.accord/audit's key",
        ),
        (
            Checkpoint(audit_origin(WITNESS), 50, true_root),
            district,
            "it is not signed by county.node.accord/audit's",
        ),
        (
            Checkpoint(audit_origin(WITNESS), 50, true_root),
            _node_signer(log),
            "origin 'district-a.node.accord/audit' is not 'county.node.accord/audit'",
        ),
    ]
    for i, (checkpoint, signer, message) in enumerate(cases):
        copy = log.lay(tmp_path / f"copy{i}")
        name = _add_checkpoint(copy, checkpoint, signer)
        report = _verify(copy, log)
        assert not report.ok
        assert _has(report, f"checkpoint {name}: {message}"), report.problems
        assert report.verified_size == SIZE  # the genuine checkpoints are still accepted


def test_a_checkpoint_of_zero_entries_is_held_to_the_empty_trees_root(log: AuditLog, copy: Path) -> None:
    """Property: a checkpoint of 0 entries, signed by the node and cosigned by district-a, whose root
    is not the empty tree's (SHA-256 of nothing) matches no log: verify_dir reports it, as it
    reports any checkpoint whose root the entries do not give (the module's rule 4: "the Merkle root
    recomputed from the entries equals every checkpoint's root at its size").

    THIS TEST FAILS (bug in policies/audit_verify.py, verify_dir: roots are compared only after an
    entry is appended, at ``frontier.size`` 1 and up, so ``want[0]`` is never looked at and a size-0
    checkpoint's root is never checked; the report is OK). Left failing on purpose."""
    wrong = leaf_hash(b"not the empty tree")
    body = Checkpoint(audit_origin(NODE), 0, wrong).body()
    cosignature = NoteSigner(witness_name(WITNESS), log.witness_key).cosign(body, 1_772_442_000)
    text = SignedNote(body, (_node_signer(log).sign(body), cosignature)).text()
    name = AuditDir(copy).save_checkpoint(0, wrong, text).name
    report = _verify(copy, log)
    assert [c.accepted for c in report.checkpoints if c.checkpoint.size == 0] == [True]
    assert not report.ok, f"{name} (0 entries, root {wrong.hex()[:16]}...) was not reported"
    assert _has(report, name)


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda d: json.dumps(d, sort_keys=True), id="spaces"),
        pytest.param(
            lambda d: json.dumps(dict(reversed(list(d.items()))), separators=(",", ":")), id="unsorted"
        ),
        pytest.param(
            lambda d: json.dumps(d, sort_keys=True, separators=(",", ":")).replace(
                '"county"', '"\\u0063ounty"'
            ),
            id="escaped",
        ),
    ],
)
def test_a_non_canonical_entry_with_its_hash_recomputed_is_caught(
    log: AuditLog, copy: Path, rewrite: Callable[[dict[str, Any]], str]
) -> None:
    """Property: entry 50 rewritten as JSON of the same value but not in canonical form (spaces,
    members not sorted, a needless escape), its hash in hashes.bin recomputed to match, is named
    as not canonical and as the first bad entry (and the root at 64 no longer matches: the node's
    signature cannot be recomputed)."""
    lines = _lines(copy)
    value = json.loads(lines[50])
    raw = rewrite(value).encode()
    assert json.loads(raw) == value and raw != lines[50]
    lines[50] = raw
    _write_lines(copy, lines)
    hashes = _hashes(copy)
    hashes[50] = leaf_hash(raw)
    _write_hashes(copy, hashes)
    report = _verify(copy, log)
    assert report.first_bad_entry == 50
    assert _has(report, "entry 50: not a valid entry (not in canonical form")
    assert _range_of(report, 64) == (40, 63)


def test_evidence_of_a_refused_fetch_is_a_problem(log: AuditLog, copy: Path) -> None:
    """Property: anything under evidence/ (what fetch refused) is reported."""
    AuditDir(copy).save_evidence("checkpoint-1772442000-12.note", b"a rolled back checkpoint")
    report = _verify(copy, log)
    assert report.problems == [
        "evidence/checkpoint-1772442000-12.note: fetch refused what the node served (see the file)"
    ]


# --- 5. The witness policy ---------------------------------------------------------------------------


def test_a_required_witness_that_cosigned_nothing_leaves_nothing_verified(log: AuditLog, copy: Path) -> None:
    """Property: with quorum 1 and a witness key (district-b's) that cosigned no checkpoint, no
    checkpoint is accepted: verification fails saying so, and the verified size is 0."""
    district_b = NoteSigner(witness_name("district-b"), seeded_key("district-b audit key"))
    report = verify_dir(copy, log.key, [district_b.verifier(ALG_COSIGNATURE)], 1)
    assert not report.ok and report.verified_size == 0
    assert not any(c.accepted for c in report.checkpoints)
    assert report.problems == [
        "no checkpoint meets the witness policy (signed by the node and cosigned by 1 of the witnesses "
        "given): nothing can be verified"
    ]


def test_a_witness_key_of_the_wrong_type_cosigned_nothing(log: AuditLog, copy: Path) -> None:
    """Property: district-a's checkpoint key (type 0x01) given where its cosignature key (0x04) is
    meant matches no cosignature line, so with quorum 1 nothing is accepted."""
    wrong = NoteSigner(witness_name(WITNESS), log.witness_key).verifier()
    report = verify_dir(copy, log.key, [wrong], 1)
    assert not report.ok and report.verified_size == 0


def test_entries_after_the_last_accepted_checkpoint_are_a_note_after_the_last_signed_a_failure(
    log: AuditLog, copy: Path
) -> None:
    """Property: with a witness key that cosigned only up to 64, the copy verifies up to 64 and
    entries 64 to 99 are named in a note (signed by the node, not yet cosigned as asked). Entries
    under no checkpoint the node signed fail, since fetch never keeps such entries: an entry
    appended to both files, and entries left after the top checkpoint was deleted (hiding it)."""
    (copy / log.checkpoint_name(100)).unlink()
    report = _verify(copy, log, quorum=0)
    assert not report.ok
    assert report.problems == [
        "entries 90 to 99 are under no checkpoint the node signed: fetch never keeps such entries, so "
        "they were added to this copy"
    ]

    copy2 = log.lay(copy.parent / "appended")
    _write_lines(copy2, [*_lines(copy2), _forged_entry()])
    _write_hashes(copy2, [*_hashes(copy2), leaf_hash(_forged_entry())])
    report = _verify(copy2, log)
    assert not report.ok and report.entries == SIZE + 1
    assert _has(report, "entries 100 to 100 are under no checkpoint the node signed")

    copy3 = log.lay(copy.parent / "uncosigned")
    for size in CHECKPOINT_SIZES:  # keep the node's signatures, drop district-a's cosignatures above 64
        if size > 64:
            path = copy3 / log.checkpoint_name(size)
            note = parse_note(path.read_bytes())
            kept = tuple(sig for sig in note.signatures if sig.name != witness_name(WITNESS))
            path.write_text(SignedNote(note.body, kept).text(), encoding="utf-8")
    report = _verify(copy3, log, quorum=1)
    assert report.ok, report.problems
    assert report.verified_size == 64
    assert report.notes == [
        "entries 64 to 99 are not covered by an accepted checkpoint yet (fetch again later)"
    ]


def test_one_witness_listed_twice_does_not_make_a_quorum_of_two(log: AuditLog, copy: Path) -> None:
    """Property: listing district-a's cosignature key twice with quorum 2 does not let its one
    cosignature count twice: either verify_dir refuses the duplicate key or no checkpoint is accepted
    (a quorum counts distinct witnesses, as open_note refuses a key listed twice).

    THIS TEST FAILS (bug in policies/audit_verify.py, _checkpoints: ``cosigned`` counts each
    verifier given, so the same key listed twice is two cosignatures; ``accord audit verify --witness
    K --witness K`` defaults to quorum 2 and is met by one witness). Left failing on purpose."""
    try:
        report = verify_dir(copy, log.key, [log.cosigner, log.cosigner], 2)
    except (ValueError, AccordError):
        return
    assert not any(c.accepted for c in report.checkpoints), [
        (c.checkpoint.size, c.cosigned_by) for c in report.checkpoints if c.accepted
    ]
    assert not report.ok


# --- 6. The command ----------------------------------------------------------------------------------


def _accord(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "accord", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_the_command_exits_0_when_ok_1_naming_the_first_bad_entry_2_for_a_wrong_key(
    log: AuditLog, tmp_path: Path
) -> None:
    """Property: ``accord audit verify DIR --key K --witness W`` exits 0 on the pristine copy
    (saying OK, 100 entries, verified up to 100); 1 after one bit of entry 42 was flipped, printing
    FAILED and naming entry 42 as the first bad entry; 2 with a message when --witness is given the
    node's checkpoint key (type 0x01) instead of a cosignature key."""
    pristine = log.lay(tmp_path / "pristine")
    flipped = log.lay(tmp_path / "flipped")
    data = bytearray(log.files[ENTRIES])
    pos = sum(len(e) + 1 for e in entries()[:42]) + 57  # inside entry 42
    assert entry_index(log.files[ENTRIES], pos) == 42
    data[pos] ^= 0x04
    (flipped / ENTRIES).write_bytes(bytes(data))
    key, witness = log.key.vkey(), log.cosigner.vkey()
    procs = [
        _accord("audit", "verify", str(pristine), "--key", key, "--witness", witness),
        _accord("audit", "verify", str(flipped), "--key", key, "--witness", witness),
        _accord("audit", "verify", str(pristine), "--key", key, "--witness", key),
    ]
    (ok, ok_out, ok_err), (bad, bad_out, _), (usage, usage_out, usage_err) = [_finish(p) for p in procs]
    assert ok == 0, (ok_out, ok_err)
    assert ok_out.startswith("OK: 100 entries; 6 checkpoint(s), 3 accepted (quorum 1 of 1 witness(es)); ")
    assert "verified up to 100 entries" in ok_out
    assert bad == 1, bad_out
    assert "FAILED: the first bad entry is entry 42\n" in bad_out
    assert "entry 42: " in bad_out
    assert usage == 2, (usage_out, usage_err)
    assert "not a witness (cosignature) key" in usage_err and usage_out == ""
