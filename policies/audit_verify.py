"""``accord audit verify DIR``: check an auditor's copy of a node's log offline.

Given the node's checkpoint key (which the auditor got from the node's operator, not from the
directory) and the auditor's witness policy (the witnesses' cosignature keys and how many of them
must have cosigned), :func:`verify_dir` checks:

1. every checkpoint held is signed by the node's key, for the node's origin; its cosignatures by
   the listed witnesses verify; it is **accepted** if at least ``quorum`` of them cosigned it;
2. no two checkpoints held give different roots for one size (the node showed two histories);
3. every entry is canonical, and its leaf hash equals the one recorded when it was fetched;
4. the Merkle root recomputed from the entries equals every checkpoint's root at its size: so
   nothing was changed, removed, reordered or added before it, and every pair of checkpoints
   is consistent (both are prefixes of the same entries);
5. no checkpoint covers more entries than the copy holds (a truncated copy), and nothing is in
   the evidence folder (what fetch refused: a rollback or a fork the node showed).

It names the first bad entry when there is one. Entries after the last checkpoint the node signed
fail (fetch never keeps such entries: they were added to the copy); entries after the last
*accepted* one (signed, but not cosigned as the policy asks) are reported, not failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accord.policies.audit_dir import AuditDir
from accord.policies.audit_entry import EntryError, decode
from accord.policies.merkle import HASH_SIZE, leaf_hash
from accord.policies.merkle_tree import Frontier
from accord.policies.note import Checkpoint, NoteError, NoteVerifier, parse_note

__all__ = ["HeldCheckpoint", "VerifyReport", "verify_dir"]

PROGRESS_EVERY = 100_000


@dataclass(frozen=True)
class HeldCheckpoint:
    path: Path
    checkpoint: Checkpoint
    cosigned_by: tuple[str, ...]
    accepted: bool


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: list[HeldCheckpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_bad_entry: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verified_size(self) -> int:
        """The largest accepted checkpoint's size (0 if none)."""
        return max((c.checkpoint.size for c in self.checkpoints if c.accepted), default=0)

    def bad_entry(self, index: int, problem: str) -> None:
        if self.first_bad_entry is None or index < self.first_bad_entry:
            self.first_bad_entry = index
        self.problems.append(f"entry {index}: {problem}")


def _checkpoints(
    folder: AuditDir, key: NoteVerifier, witnesses: Sequence[NoteVerifier], quorum: int, report: VerifyReport
) -> list[HeldCheckpoint]:
    held: list[HeldCheckpoint] = []
    for path in folder.checkpoint_files():
        where = f"checkpoint {path.name}"
        try:
            note = parse_note(path.read_bytes())
            if key.verify(note) is None:
                raise NoteError(f"it is not signed by {key.name}'s key")
            checkpoint = Checkpoint.parse(note.body)
        except NoteError as err:
            report.problems.append(f"{where}: {err}")
            continue
        if checkpoint.origin != key.name:
            report.problems.append(f"{where}: origin {checkpoint.origin!r} is not {key.name!r}")
            continue
        cosigned: list[str] = []
        for w in witnesses:
            try:
                if w.verify(note) is not None:
                    cosigned.append(w.name)
            except NoteError as err:
                report.problems.append(f"{where}: a cosignature of {w.name} does not verify ({err})")
        listed = {(w.name, w.key_id) for w in witnesses}
        for sig in note.signatures:
            if any(sig.name == name for name, _ in listed) and (sig.name, sig.key_id) not in listed:
                report.notes.append(
                    f"{where}: a signature line names witness {sig.name} but not its key (key ID "
                    f"{sig.key_id.hex()}): not counted"
                )
        held.append(HeldCheckpoint(path, checkpoint, tuple(cosigned), len(cosigned) >= quorum))
    by_size: dict[int, HeldCheckpoint] = {}
    for h in held:
        other = by_size.setdefault(h.checkpoint.size, h)
        if other.checkpoint.root != h.checkpoint.root:
            report.problems.append(
                f"checkpoints {other.path.name} and {h.path.name} are both signed by the node and give two "
                f"different roots for the same {h.checkpoint.size} entries: the node showed two histories"
            )
    return held


def verify_dir(
    path: Path,
    key: NoteVerifier,
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify the audit directory ``path`` (see the module docstring)."""
    folder = AuditDir(path)
    folder.require()
    report = VerifyReport()
    distinct: dict[bytes, NoteVerifier] = {}
    for w in witnesses:  # one key counts once towards the quorum, under whatever names it is listed
        if w.public_key == key.public_key:
            report.problems.append(f"witness {w.name} has the node's own key: a node cannot witness itself")
            continue
        distinct.setdefault(w.public_key, w)
    witnesses = list(distinct.values())
    if quorum > len(witnesses):
        report.problems.append(
            f"the witness policy asks for {quorum} cosignatures but lists {len(witnesses)} distinct "
            "witness key(s)"
        )
    report.checkpoints = _checkpoints(folder, key, witnesses, quorum, report)
    want: dict[int, list[HeldCheckpoint]] = {}
    for h in report.checkpoints:
        want.setdefault(h.checkpoint.size, []).append(h)
    hashes = folder.hashes()
    if len(hashes) % HASH_SIZE:
        report.problems.append(f"hashes.bin is {len(hashes)} bytes, not a whole number of hashes: it was cut")
    total = len(hashes) // HASH_SIZE
    frontier = Frontier()
    for h in want.get(0, ()):
        if h.checkpoint.root != frontier.root():
            report.problems.append(
                f"checkpoint {h.path.name}: a tree of no entries has the root of the empty tree, not this one"
            )
    last_good = 0
    changed_hashes: list[int] = []
    roots_broken = False
    for index, line in enumerate(folder.lines()):
        if not line.endswith(b"\n"):
            report.bad_entry(index, "the last line is cut short (no newline)")
        raw = line[:-1] if line.endswith(b"\n") else line
        leaf = leaf_hash(raw)
        try:
            decode(raw)
        except EntryError as err:
            report.bad_entry(index, f"not a valid entry ({err})")
        if index < total:
            if hashes[index * HASH_SIZE : (index + 1) * HASH_SIZE] != leaf:
                changed_hashes.append(index)
        else:
            report.bad_entry(index, "no hash was recorded for it when fetched (added afterwards?)")
        frontier.append(leaf)
        for h in want.get(frontier.size, ()):
            if frontier.root() != h.checkpoint.root:
                roots_broken = True
                report.problems.append(
                    f"checkpoint {h.path.name}: the root of the first {frontier.size} entries is not its "
                    f"root: an entry between {last_good} and {frontier.size - 1} was changed, removed, "
                    "added or moved"
                )
            else:
                last_good = frontier.size
        if progress is not None and frontier.size % PROGRESS_EVERY == 0:
            progress(frontier.size, total)
    report.entries = frontier.size
    if changed_hashes and not roots_broken and report.entries == total:
        report.problems.append(
            f"hashes.bin was changed at entry {changed_hashes[0]} (and {len(changed_hashes) - 1} more): the "
            "entries themselves give every checkpoint's root; fetch into a new folder to rebuild it"
        )
    else:
        for index in changed_hashes:
            report.bad_entry(index, "its bytes differ from those fetched (its leaf hash changed)")
    if report.entries < total:
        report.problems.append(
            f"entries.jsonl holds {report.entries} entries but {total} were fetched: entries were removed"
        )
    for h in report.checkpoints:
        if h.checkpoint.size > report.entries:
            report.problems.append(
                f"checkpoint {h.path.name} covers {h.checkpoint.size} entries but the copy holds only "
                f"{report.entries}: the copy was truncated"
            )
    for evidence in folder.evidence_files():
        report.problems.append(f"evidence/{evidence.name}: fetch refused what the node served (see the file)")
    if not any(h.accepted for h in report.checkpoints):
        report.problems.append(
            "no checkpoint meets the witness policy (signed by the node"
            + (f" and cosigned by {quorum} of the witnesses given" if quorum else "")
            + "): nothing can be verified"
        )
    elif report.entries > max(h.checkpoint.size for h in report.checkpoints):
        signed = max(h.checkpoint.size for h in report.checkpoints)
        report.problems.append(
            f"entries {signed} to {report.entries - 1} are under no checkpoint the node signed: fetch never "
            "keeps such entries, so they were added to this copy"
        )
    elif report.entries > report.verified_size:
        report.notes.append(
            f"entries {report.verified_size} to {report.entries - 1} are not covered by an accepted "
            "checkpoint yet (fetch again later)"
        )
    return report
