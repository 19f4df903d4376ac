"""A realistic 100-entry audit log of node ``county``, fetched into an auditor's directory.

:func:`build_log` runs the node's side as a node does: entries appended to a
:class:`~accord.node.state.MemoryState` in batches, a :class:`~accord.node.audit_log.Checkpointer`
signing a checkpoint after some batches, and witness ``district-a`` cosigning some of those
(``add_cosignature``, checked by the node against ``district-a``'s key). It then writes the
directory the way ``accord audit fetch`` does (``AuditDir.create``, ``append`` with the leaf
hashes, ``save_checkpoint`` of every checkpoint the node lists) and keeps every file's bytes, so a
test lays a fresh copy with :meth:`AuditLog.lay` instead of building the log again.

The keys are Ed25519 keys derived from fixed seeds (not :func:`~accord.policies.note.generate_key`)
so that the files, signatures included, are the same on every run: a failing bit position found
by a test can then be reproduced.

The log (entry indexes; checkpoints are issued after the batches ending at the sizes marked):

- 0: ``start``; 1, 2: ``agreement`` (``dsa-1``, ``dsa-2`` loaded); 60: ``agreement`` (``dsa-1``
  changed); 75: ``consent``; every other entry a ``decision`` (answered, answered again,
  refused, failed, previewed, budget shown; three analysts, two agreements, varied uses);
- batches end at 3, 17, 29, 40, 64, 77, 90, 100; checkpoints at :data:`CHECKPOINT_SIZES`;
  ``district-a`` cosigned those of :data:`COSIGNED_SIZES`.

It also holds what the bit-flip tests share with their worker processes: :class:`Flipper` (one
bit of a file flipped in place), :class:`PureMemo` (verification's pure helpers answered from a
table for the pristine inputs), :func:`flip_failure` (what a flipped copy's report must say) and
:func:`run_flips`, and the ``multiprocessing`` worker functions of the exhaustive runs.
"""

from __future__ import annotations

import bisect
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.node.audit_log import Checkpointer
from accord.node.config_audit import audit_origin, witness_name
from accord.node.state.memory import MemoryState
from accord.policies import audit_verify
from accord.policies.audit_dir import AuditDir, LogInfo
from accord.policies.audit_entry import AuditEntry, decision_entry, decode, encode, timestamp
from accord.policies.audit_verify import VerifyReport, verify_dir
from accord.policies.decision import Decision
from accord.policies.merkle import HASH_SIZE, leaf_hash
from accord.policies.note import (
    ALG_COSIGNATURE,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    Signature,
    SignedNote,
    parse_note,
)

__all__ = [
    "BATCH_ENDS",
    "CHECKPOINT_SIZES",
    "COSIGNED_SIZES",
    "NODE",
    "SIZE",
    "WITNESS",
    "AuditLog",
    "Flipper",
    "PureMemo",
    "build_log",
    "cosignature_span",
    "entries",
    "entry_index",
    "files_digest",
    "flip_failure",
    "run_flips",
    "seeded_key",
    "worker_run",
    "worker_start",
]

NODE = "county"
WITNESS = "district-a"
SIZE = 100
BATCH_ENDS = (3, 17, 29, 40, 64, 77, 90, 100)
CHECKPOINT_SIZES = (3, 17, 40, 64, 90, 100)
COSIGNED_SIZES = (17, 64, 100)
COSIGNED_AT = 1_772_442_000  # 2026-03-02T09:00:00Z, the POSIX time of the cosignatures

_START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
_ANALYSTS = ("alice", "bob", "carol")
_AGREEMENTS = (("dsa-1", "P-1", "citizens"), ("dsa-2", "P-7", "contacts"))
_USES = (
    (("*", "count"),),
    (("age", "sum"), ("district", "group_by")),
    (("age", "avg"), ("district", "filter"), ("income", "sum")),
    (("contact_kind", "group_by"), ("*", "count")),
)
_REFUSALS = ("FIELD_NOT_IN_AGREEMENT", "BUDGET_EXHAUSTED", "INVALID_QUERY", "ANALYST_NOT_PARTY")
_FAILURES = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def seeded_key(seed: str) -> Ed25519PrivateKey:
    """An Ed25519 key derived from ``seed`` (the same on every run)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _decision(i: int, at: datetime) -> bytes:
    analyst = _ANALYSTS[i % 3]
    agreement, purpose, dataset = _AGREEMENTS[(i // 3) % 2]
    asked = Decision(
        node=NODE,
        kind="query",
        outcome="previewed",
        at=at,
        caller="coordinator",
        analyst=analyst,
        query_id=f"q-{analyst}-{i // 2:04d}",
        agreement=agreement,
        purpose=purpose,
        dataset=dataset,
        uses=_USES[i % 4],
        payload_digest=_digest("payload", i),
        envelope_digest=_digest("envelope", i),
    )
    match i % 10:
        case 0 | 2 | 4 | 7:
            epsilon = ("0.1", "1/20", "0.25", "0.05")[i % 4]
            d = replace(asked, outcome="answered", epsilon=epsilon, release_digest=_digest("release", i))
        case 1:
            d = replace(asked, outcome="answered-again", release_digest=_digest("release", i - 1))
        case 3 | 8:
            d = replace(asked, outcome="refused", reason=_REFUSALS[i % 4])
        case 5:
            d = replace(asked, outcome="failed", reason=_FAILURES[i % 2])
        case 6:
            d = replace(asked, kind="explain")
        case _:
            d = Decision(NODE, "budget", "shown", at, "coordinator", analyst=analyst, agreement=agreement)
    return decision_entry(d)


@cache
def entries() -> tuple[bytes, ...]:
    """The 100 canonical entries of the log, in order."""
    out: list[bytes] = []
    for i in range(SIZE):
        at = _START + timedelta(seconds=37 * i, microseconds=1_000 * i + 123)
        when = timestamp(at)
        if i == 0:
            fields = {"node": NODE, "at": when, "version": "0.9.0", "config_digest": _digest("cfg")}
            out.append(encode({"type": "start", **fields}))
        elif i in (1, 2, 60):
            agreement = "dsa-1" if i != 2 else "dsa-2"
            change = "changed" if i == 60 else "loaded"
            fields = {"node": NODE, "at": when, "agreement": agreement, "change": change}
            out.append(encode({"type": "agreement", **fields, "digest": _digest(agreement, change)}))
        elif i == 75:
            counts = {"P-1": {"in": 0, "out": 12}, "P-7": {"in": 340, "out": 3}}
            consent = {"node": NODE, "at": when, "register_version": 4, "counts": counts}
            out.append(encode({"type": "consent", **consent}))
        else:
            out.append(_decision(i, at))
    return tuple(out)


@dataclass(frozen=True)
class AuditLog:
    """The fetched directory's files (relative path -> bytes) and the keys behind them."""

    files: dict[str, bytes]
    node_key: Ed25519PrivateKey
    witness_key: Ed25519PrivateKey
    notes: dict[int, str]  # size -> the node's checkpoint note, with its cosignatures

    @property
    def origin(self) -> str:
        return audit_origin(NODE)

    @property
    def key(self) -> NoteVerifier:
        """The node's checkpoint key (what its operator gives the auditor)."""
        return NoteSigner(self.origin, self.node_key).verifier()

    @property
    def cosigner(self) -> NoteVerifier:
        """``district-a``'s cosignature key (what the auditor lists as a witness)."""
        return NoteSigner(witness_name(WITNESS), self.witness_key).verifier(ALG_COSIGNATURE)

    def checkpoint_name(self, size: int) -> str:
        """The relative path of the note of the checkpoint of ``size`` entries."""
        root = Checkpoint.parse(parse_note(self.notes[size]).body).root
        return f"checkpoints/{size:012d}-{root.hex()[:16]}.note"

    def lay(self, path: Path) -> Path:
        """Write a fresh copy of the directory at ``path`` (created) and return ``path``."""
        for rel, data in self.files.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return path


def build_log(work: Path) -> AuditLog:
    """Run the node and witness (see the module docstring), fetch into ``work`` (a new folder) and
    read the files back."""
    node_key, witness_key = seeded_key("county audit key"), seeded_key("district-a audit key")
    state = MemoryState(NODE)
    witness_checkpoint_key = NoteSigner(audit_origin(WITNESS), witness_key).verifier()
    checkpointer = Checkpointer(NODE, state, node_key, {WITNESS: witness_checkpoint_key})
    cosigner = NoteSigner(witness_name(WITNESS), witness_key)
    log = entries()
    start = 0
    for end in BATCH_ENDS:
        assert state.append(log[start:end]) == end
        start = end
        if end in CHECKPOINT_SIZES:
            note = checkpointer.issue()
            assert note is not None
            if end in COSIGNED_SIZES:
                body = parse_note(note).body
                checkpointer.add_cosignature(WITNESS, body, cosigner.cosign(body, COSIGNED_AT + end).line())
    folder = AuditDir(work)
    key = NoteSigner(audit_origin(NODE), node_key).vkey()
    folder.create(LogInfo(NODE, audit_origin(NODE), key))
    listed = state.log_entries(0, state.log_size())
    folder.append(listed, [leaf_hash(e) for e in listed])
    notes = dict(state.checkpoints())
    for size, note_text in notes.items():
        folder.save_checkpoint(size, Checkpoint.parse(parse_note(note_text).body).root, note_text)
    files = {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    return AuditLog(files, node_key, witness_key, notes)


def files_digest(files: dict[str, bytes]) -> str:
    """One SHA-256 over every file's path and bytes (two builds are the same if their digests are)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{len(files[rel])}\0".encode() + files[rel])
    return h.hexdigest()


# --- Flipping bits fast -------------------------------------------------------------------------------

_VERIFY = NoteVerifier.verify


class PureMemo:
    """``verify_dir``'s pure helpers (``decode``, ``leaf_hash``, ``parse_note``, ``Checkpoint.parse``,
    ``NoteVerifier.verify``), answered from a table for the pristine copy's inputs and by the real
    function for any other input: a flipped line, hash or note always goes through the real code.

    Each of these is a pure function of its argument (bytes, a note text, a frozen note), so a
    verification gives the same report with or without the table, only faster (about 1.3 ms
    instead of 7.5 ms over this log). ``on = False`` turns the table off (the flip runner compares
    both for a sample of flips). Install it with :meth:`patches`."""

    def __init__(self, log: AuditLog) -> None:
        self.on = True
        self._entries = {raw: decode(raw) for raw in entries()}
        self._leaves = {raw: leaf_hash(raw) for raw in entries()}
        self._notes = {d: parse_note(d) for rel, d in log.files.items() if rel.startswith("checkpoints/")}
        self._bodies = {n.body: Checkpoint.parse(n.body) for n in self._notes.values()}
        self._pristine = {id(n) for n in self._notes.values()}  # the table keeps them alive
        self._verified: dict[tuple[str, bytes, int], Signature | None] = {}

    def decode(self, raw: bytes) -> AuditEntry:
        hit = self._entries.get(raw) if self.on else None
        return decode(raw) if hit is None else hit

    def leaf_hash(self, raw: bytes) -> bytes:
        hit = self._leaves.get(raw) if self.on else None
        return leaf_hash(raw) if hit is None else hit

    def parse_note(self, text: str | bytes) -> SignedNote:
        hit = self._notes.get(text) if self.on and isinstance(text, bytes) else None
        return parse_note(text) if hit is None else hit

    def parse_checkpoint(self, body: str) -> Checkpoint:
        hit = self._bodies.get(body) if self.on else None
        return Checkpoint.parse(body) if hit is None else hit

    def verify(self, verifier: NoteVerifier, note: SignedNote) -> Signature | None:
        if not self.on or id(note) not in self._pristine:
            return _VERIFY(verifier, note)
        key = (verifier.name, verifier.key_id, id(note))
        if key not in self._verified:
            self._verified[key] = _VERIFY(verifier, note)
        return self._verified[key]

    def patches(self) -> list[tuple[object, str, object]]:
        """(object, attribute, replacement) to set, with ``monkeypatch.setattr`` in a test."""

        def verify(verifier: NoteVerifier, note: SignedNote) -> Signature | None:
            return self.verify(verifier, note)

        return [
            (audit_verify, "decode", self.decode),
            (audit_verify, "leaf_hash", self.leaf_hash),
            (audit_verify, "parse_note", self.parse_note),
            (audit_verify, "Checkpoint", SimpleNamespace(parse=self.parse_checkpoint)),
            (NoteVerifier, "verify", verify),
        ]


class Flipper:
    """Flips one bit at a time of the file ``path`` in place (writing one byte, then restoring it:
    rewriting the whole file costs more than a verification on some file systems)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()

    @contextmanager
    def flipped(self, bit: int) -> Iterator[None]:
        pos = bit // 8
        with self.path.open("r+b") as f:
            f.seek(pos)
            f.write(bytes([self.data[pos] ^ (1 << (bit % 8))]))
            f.flush()
            try:
                yield
            finally:
                f.seek(pos)
                f.write(self.data[pos : pos + 1])


@cache
def _line_ends(data: bytes) -> tuple[int, ...]:
    return tuple(i for i, b in enumerate(data) if b == ord("\n"))


def entry_index(data: bytes, pos: int) -> int:
    """In the bytes of an entries file, the index of the entry byte ``pos`` belongs to (an entry's
    newline belongs to it)."""
    return bisect.bisect_left(_line_ends(data), pos)


def cosignature_span(note: bytes) -> range:
    """The byte positions of the witness's cosignature line in a note (newline included)."""
    start = note.index(f"\u2014 {witness_name(WITNESS)} ".encode())
    return range(start, note.index(b"\n", start) + 1)


def flip_failure(log: AuditLog, rel: str, bit: int, report: VerifyReport) -> str | None:
    """What is wrong with ``report``, the verification (quorum 1, ``district-a`` the witness) of a
    copy in which bit ``bit`` of the file ``rel`` was flipped; None if it is as it should be:

    - ``entries.jsonl``: not ok, and the first bad entry is the entry holding the byte;
    - ``hashes.bin``: not ok, and a problem says hashes.bin was changed at the entry whose hash
      holds the byte (the entries themselves still give every root: no entry is bad);
    - a checkpoint note: not ok, or (a flip in the cosignature line only) that checkpoint is no
      longer accepted, the verified size no longer counts on it, and entries it alone covered are
      reported in a note."""
    pos = bit // 8
    byte = log.files[rel][pos]
    where = f"{rel} bit {bit} (byte {pos}: {byte:#04x} -> {byte ^ (1 << bit % 8):#04x})"
    if rel == "entries.jsonl":
        want: int | None = entry_index(log.files[rel], pos)
    elif rel == "hashes.bin":
        changed = f"hashes.bin was changed at entry {pos // HASH_SIZE} "
        if report.ok or not any(p.startswith(changed) for p in report.problems):
            return f"{where}: no problem says {changed!r}; {report.problems[:3]}"
        return None
    else:
        name = rel.rsplit("/", 1)[1]
        if report.ok:
            size = int(name.split("-")[0])
            if size not in COSIGNED_SIZES:
                return f"{where}: not detected (verify_dir says ok)"
            accepted = [c for c in report.checkpoints if c.path.name == name and c.accepted]
            if accepted:
                return f"{where}: not detected, and the checkpoint is still accepted"
            if pos not in cosignature_span(log.files[rel]):
                return f"{where}: the checkpoint is dropped silently, yet the flip is not in the cosignature"
            if report.verified_size >= size and size == max(COSIGNED_SIZES):
                return f"{where}: verified_size {report.verified_size} still counts on it"
            if size == max(COSIGNED_SIZES) and not report.notes:
                return f"{where}: no note says the entries after {report.verified_size} are not covered"
        return None
    if report.ok:
        return f"{where}: not detected (verify_dir says ok)"
    if report.first_bad_entry != want:
        return f"{where}: first_bad_entry is {report.first_bad_entry}, not {want}; {report.problems[:3]}"
    return None


def run_flips(
    log: AuditLog,
    copy: Path,
    rel: str,
    bits: Iterator[int] | range | list[int],
    memo: PureMemo | None = None,
    compare_every: int = 0,
) -> tuple[int, list[str]]:
    """Flip each bit of ``bits`` of the file ``rel`` of the laid copy ``copy``, verify, and check
    the report (:func:`flip_failure`): how many flips, and what failed. With ``memo`` (installed)
    and ``compare_every``, every so many flips are verified again without the table and both
    reports must be the same."""
    flipper = Flipper(copy / rel)
    assert flipper.data == log.files[rel], f"the copy's {rel} is not pristine"
    key, witnesses = log.key, [log.cosigner]
    failures: list[str] = []
    count = 0
    for bit in bits:
        with flipper.flipped(bit):
            report = verify_dir(copy, key, witnesses, 1)
            if memo is not None and compare_every and count % compare_every == 0:
                memo.on = False
                try:
                    plain = verify_dir(copy, key, witnesses, 1)
                finally:
                    memo.on = True
                if _summary(plain) != _summary(report):
                    failures.append(f"{rel} bit {bit}: the table changed the report: {_summary(plain)}")
        count += 1
        failure = flip_failure(log, rel, bit, report)
        if failure is not None:
            failures.append(failure)
    return count, failures


def _summary(report: VerifyReport) -> tuple[object, ...]:
    accepted = tuple((c.path.name, c.accepted, c.cosigned_by) for c in report.checkpoints)
    return (report.ok, report.first_bad_entry, tuple(report.problems), tuple(report.notes), accepted)


# --- Worker processes for the exhaustive runs ---------------------------------------------------------

_WORKER: dict[str, Any] = {}


def worker_start(base: str, digest: str) -> None:
    """Set up a worker process (``multiprocessing`` spawn initializer): build the same log (the
    keys are seeded: ``digest`` must match), lay a copy of it and install the table."""
    work = Path(tempfile.mkdtemp(dir=base))
    log = build_log(work / "built")
    if files_digest(log.files) != digest:
        # Not raised here: a pool whose initializer raises starts new workers for ever (a hang);
        # worker_run raises it instead, so the test fails.
        _WORKER.update(
            error="the worker built another log than the test's (keys not seeded, or the code changed?)"
        )
        return
    memo = PureMemo(log)
    for obj, name, value in memo.patches():
        setattr(obj, name, value)
    _WORKER.update(log=log, copy=log.lay(work / "copy"), memo=memo)


def worker_run(task: tuple[str, int, int]) -> tuple[int, list[str]]:
    """Flip bits [start, stop) of file ``rel`` in this worker's copy (see :func:`run_flips`)."""
    rel, start, stop = task
    if "error" in _WORKER:
        raise RuntimeError(_WORKER["error"])
    return run_flips(_WORKER["log"], _WORKER["copy"], rel, range(start, stop), _WORKER["memo"], 499)
