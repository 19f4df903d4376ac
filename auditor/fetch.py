"""``accord audit fetch``: pull a node's audit log into an auditor's directory, incrementally.

Over mTLS with an auditor certificate (the server must be the named node), fetch:

1. asks the node for a fresh checkpoint and checks it is signed by the node's key (the one the
   auditor was given, kept in ``log.json`` after the first fetch) for the node's origin;
2. refuses it if it contradicts what the directory holds: a smaller tree than a checkpoint held
   (a **rollback**), or another root for a size held (a **fork**); the checkpoint is kept under
   ``evidence/`` and fetch fails;
3. downloads the entries the directory lacks, in batches, and checks that, appended to the entries
   held, they give the new checkpoint's root (and each other checkpoint's root at its size);
   only then are they appended (with their leaf hashes) to the directory; entries that do not
   match are kept under ``evidence/`` and fetch fails;
4. keeps every checkpoint the node lists, with its cosignatures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from accord.errors import ConfigError, DataError
from accord.policies.audit_dir import AuditDir, LogInfo
from accord.policies.audit_entry import EntryError, decode
from accord.policies.identity import Identity
from accord.policies.merkle import leaf_hash
from accord.policies.merkle_tree import Frontier
from accord.policies.note import Checkpoint, NoteError, NoteVerifier, parse_note
from accord.protos.v1 import audit_pb2, audit_pb2_grpc
from accord.rpc.transport import TlsFiles, secure_channel

__all__ = ["FetchResult", "fetch"]

BATCH = 1000
CHECKPOINTS_PER_CALL = 1000
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class FetchResult:
    size: int
    new_entries: int
    checkpoints: int


def _checked(note_text: str, key: NoteVerifier) -> tuple[Checkpoint, str]:
    try:
        note = parse_note(note_text)
        if key.verify(note) is None:
            raise NoteError(f"it is not signed by {key.name}'s key")
        checkpoint = Checkpoint.parse(note.body)
    except NoteError as err:
        raise DataError(f"the node served a checkpoint that does not verify: {err}") from None
    if checkpoint.origin != key.name:
        raise DataError(f"the node served a checkpoint of {checkpoint.origin!r}, not {key.name!r}")
    return checkpoint, note.text()


def _held(folder: AuditDir, key: NoteVerifier) -> dict[int, bytes]:
    held: dict[int, bytes] = {}
    for path in folder.checkpoint_files():
        checkpoint, _ = _checked(path.read_text(encoding="utf-8"), key)
        held[checkpoint.size] = checkpoint.root
    return held


def fetch(
    node: str,
    address: str,
    tls: TlsFiles,
    directory: Path,
    key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Fetch node ``node``'s log from ``address`` into ``directory`` (see the module docstring).
    ``key``: the node's checkpoint vkey (required for a new directory; must match a known one)."""
    folder = AuditDir(directory)
    if (directory / "log.json").is_file():
        info = folder.info()
        if info.node != node:
            raise ConfigError(
                f"{directory} holds node {info.node}'s log, not {node}'s; use another directory"
            )
        if key is not None and key.strip() != info.key:
            raise ConfigError(f"{directory} was fetched with another key for {node}; the node's key changed?")
    else:
        if key is None:
            raise ConfigError("a first fetch needs the node's checkpoint key (--key), from its operator")
        verifier = NoteVerifier.from_vkey(key.strip())
        folder.create(LogInfo(node, verifier.name, key.strip()))
        info = folder.info()
    verifier = NoteVerifier.from_vkey(info.key)
    folder.recover()  # a fetch killed between its two files left uncommitted bytes: drop them
    held = _held(folder, verifier)
    have = folder.entry_count()
    with secure_channel(address, tls, Identity("node", node)) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        reply = stub.GetCheckpoint(audit_pb2.GetCheckpointRequest(fresh=True), timeout=TIMEOUT_SECONDS)
        latest, text = _checked(reply.note, verifier)
        largest = max(held, default=0)
        contradiction = None
        if latest.size < largest:
            contradiction = f"rolled back: it now shows {latest.size} entries after showing {largest}"
        elif latest.size in held and held[latest.size] != latest.root:
            contradiction = f"forked: another root for the {latest.size} entries it showed before"
        if contradiction is not None:
            path = folder.save_evidence(f"checkpoint-{int(time.time())}-{latest.size}.note", text.encode())
            raise DataError(f"node {node} {contradiction}; its checkpoint is kept in {path}")
        listed: list[tuple[Checkpoint, str]] = []
        since = 0
        while True:
            page = stub.ListCheckpoints(
                audit_pb2.ListCheckpointsRequest(since=since), timeout=TIMEOUT_SECONDS
            )
            listed += [_checked(c.note, verifier) for c in page.checkpoints]
            if len(page.checkpoints) < CHECKPOINTS_PER_CALL:
                break
            since = listed[-1][0].size + 1
        beyond = [c.size for c, _ in listed if c.size > latest.size]
        if beyond:  # issued since we asked, or signed before and hidden now: ask again
            again = stub.GetCheckpoint(audit_pb2.GetCheckpointRequest(fresh=False), timeout=TIMEOUT_SECONDS)
            newer, newer_text = _checked(again.note, verifier)
            if newer.size >= max(beyond):
                latest, text = newer, newer_text
        notes = {c.size: t for c, t in [*listed, (latest, text)]}

        def refuse(size: int, problem: str) -> DataError:
            """Keep node-signed checkpoint ``size`` as evidence; the error to raise."""
            path = folder.save_evidence(f"checkpoint-{int(time.time())}-{size}.note", notes[size].encode())
            return DataError(f"node {node} {problem}; its signed checkpoint is kept in {path}")

        beyond = [c.size for c, _ in listed if c.size > latest.size]
        if beyond:  # it signed a larger tree before, and still shows a smaller one
            raise refuse(
                max(beyond),
                f"rolled back: it lists a checkpoint of {max(beyond)} entries but now shows {latest.size}",
            )
        wanted = {c.size: c.root for c, _ in listed}
        wanted[latest.size] = latest.root
        for size, root in wanted.items():
            if size in held and held[size] != root:
                raise refuse(size, f"forked: its checkpoint of {size} entries differs from the one held")
        frontier = Frontier()
        for i in range(0, len(hashes := folder.hashes()), 32):
            frontier.append(hashes[i : i + 32])
            expected = wanted.get(frontier.size)
            if expected is not None and frontier.root() != expected:
                raise refuse(
                    frontier.size,
                    f"forked: its checkpoint of {frontier.size} entries does not match the entries held "
                    "(or this copy was changed: run accord audit verify)",
                )
        new_entries: list[bytes] = []
        new_leaves: list[bytes] = []
        while have + len(new_entries) < latest.size:
            start = have + len(new_entries)
            batch = stub.GetEntries(
                audit_pb2.GetEntriesRequest(start=start, end=min(latest.size, start + BATCH)),
                timeout=TIMEOUT_SECONDS,
            ).entries
            if not batch:
                raise DataError(
                    f"node {node} served no entries from {start} though its checkpoint has {latest.size}"
                )
            for raw in batch:
                index = have + len(new_entries)
                try:
                    decode(raw)
                except EntryError as err:
                    folder.save_evidence(f"entry-{index}.bin", raw)
                    raise DataError(
                        f"node {node} served entry {index}, which is not a valid entry: {err}"
                    ) from None
                leaf = leaf_hash(raw)
                frontier.append(leaf)
                new_entries.append(raw)
                new_leaves.append(leaf)
                expected = wanted.get(frontier.size)
                if expected is not None and frontier.root() != expected:
                    folder.save_evidence(
                        f"entries-{have}-{frontier.size}.jsonl", b"".join(e + b"\n" for e in new_entries)
                    )
                    raise DataError(
                        f"node {node}'s entries up to {frontier.size} do not give its signed checkpoint's "
                        "root; they are kept under evidence/"
                    )
            if progress is not None:
                progress(have + len(new_entries), latest.size)
        folder.append(new_entries, new_leaves)
        for c, note_text in [*listed, (latest, text)]:
            if c.size <= latest.size:
                folder.save_checkpoint(c.size, c.root, note_text)
    return FetchResult(latest.size, len(new_entries), len(listed))
