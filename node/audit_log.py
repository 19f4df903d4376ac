"""The node's side of its audit log beyond the answer path: what it records when it starts and
when its consent register changes, the checkpoints it signs, and the cosignatures it takes.

- **Start-up** (:func:`record_startup`): one ``start`` entry (Accord's version, the SHA-256 of the
  config file), one ``agreement`` entry per agreement held (``loaded``, or ``changed`` when its
  digest differs from the one the log last recorded; ``removed`` for one the log knew and the
  node no longer holds), and a ``consent`` entry if the register changed while the node was down.
- **Checkpoints** (:class:`Checkpointer`): a C2SP ``tlog-checkpoint`` of the log as it stands
  (origin ``<node>.node.accord/audit``, size, root), signed with the node's Ed25519 key,
  issued every ``[audit] checkpoint_seconds`` if the log grew, and on request (auditors and
  witnesses ask for a fresh one). Each is kept, so an auditor can fetch every checkpoint the
  node ever issued.
- **Cosignatures**: a witness hands back its ``cosignature/v1`` line. This node takes it only from
  a node whose key it knows (its own ``[[audit.witness]]`` list: nodes witness each other), checks
  it against that key and the exact checkpoint this node signed, then keeps it with the checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.errors import ConfigError, InvalidQuery, NotFound, PermissionDenied
from accord.node.config import NodeConfig
from accord.node.config_audit import audit_origin, witness_name
from accord.node.state import NodeState
from accord.policies.agreements import Agreement
from accord.policies.audit_entry import encode, timestamp
from accord.policies.note import (
    ALG_COSIGNATURE,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    SignedNote,
    parse_note,
)
from accord.policies.note_keys import load_private_key

__all__ = ["Checkpointer", "consent_entry", "record_startup"]

log = logging.getLogger(__name__)


def consent_entry(node: str, version: int, counts: Mapping[str, Mapping[str, int]]) -> bytes:
    """The entry recording that the consent register is at ``version`` with ``counts``."""
    return encode(
        {
            "type": "consent",
            "node": node,
            "at": timestamp(datetime.now(UTC)),
            "register_version": version,
            "counts": {p: dict(c) for p, c in counts.items()},
        }
    )


def _version() -> str:
    try:
        return importlib.metadata.version("accord")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def record_startup(
    state: NodeState,
    config: NodeConfig,
    agreements: Mapping[str, Agreement],
    consent: tuple[int, Mapping[str, Mapping[str, int]]] | None,
) -> None:
    """Append the start-up entries (see the module docstring) in one transaction."""
    at = timestamp(datetime.now(UTC))
    digest = hashlib.sha256(config.source.read_bytes()).hexdigest() if config.source is not None else ""
    entries = [
        encode(
            {"type": "start", "node": config.name, "at": at, "version": _version(), "config_digest": digest}
        )
    ]
    known = state.seen("agreement")
    seen: dict[tuple[str, str], str] = {}
    for agreement_id in sorted(agreements):
        d = agreements[agreement_id].digest
        change = "loaded" if known.get(agreement_id, d) == d else "changed"
        entries.append(_agreement_entry(config.name, at, agreement_id, change, d))
        seen[("agreement", agreement_id)] = d
    for agreement_id in sorted(set(known) - set(agreements)):
        if known[agreement_id]:
            entries.append(_agreement_entry(config.name, at, agreement_id, "removed", ""))
            seen[("agreement", agreement_id)] = ""
    if consent is not None and state.seen("consent").get("version") != str(consent[0]):
        entries.append(consent_entry(config.name, *consent))
        seen[("consent", "version")] = str(consent[0])
    state.append(entries, seen=seen)


def _agreement_entry(node: str, at: str, agreement: str, change: str, digest: str) -> bytes:
    return encode(
        {
            "type": "agreement",
            "node": node,
            "at": at,
            "agreement": agreement,
            "change": change,
            "digest": digest,
        }
    )


class Checkpointer:
    """Signs and keeps node ``node``'s checkpoints and takes its witnesses' cosignatures."""

    def __init__(
        self,
        node: str,
        state: NodeState,
        key: Ed25519PrivateKey | None,
        witnesses: Mapping[str, NoteVerifier],
    ) -> None:
        """``witnesses``: node name -> that node's checkpoint verifier (its cosignature key is the
        same Ed25519 key under the name :func:`witness_name`)."""
        self.node = node
        self.origin = audit_origin(node)
        self._state = state
        self._key = key
        self._signer = None if key is None else NoteSigner(self.origin, key)
        self._cosigners = {
            name: NoteVerifier(witness_name(name), v.public_key, ALG_COSIGNATURE)
            for name, v in witnesses.items()
        }
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: NodeConfig, state: NodeState) -> Checkpointer:
        key = None
        if config.audit.key is not None:
            try:
                key = load_private_key(config.audit.key)
            except NoteError as err:
                raise ConfigError(
                    f"[audit] key: {err}; create it with `accord node audit-key --config ...`"
                ) from None
        return cls(config.name, state, key, {p.name: p.verifier() for p in config.audit.witness})

    @property
    def signs(self) -> bool:
        return self._signer is not None

    def signer_as(self, name: str) -> NoteSigner:
        """The node's key under another name (it cosigns as its witness name)."""
        assert self._key is not None
        return NoteSigner(name, self._key)

    def issue(self) -> str | None:
        """Sign a checkpoint of the log as it is now, if it grew since the latest; the latest note
        (None when the node signs nothing or has issued nothing yet)."""
        if self._signer is None:
            return None
        with self._lock:
            latest = self._state.latest_checkpoint()
            size = self._state.log_size()
            if size == 0 or (latest is not None and latest[0] >= size):
                return None if latest is None else latest[1]
            body = Checkpoint(self.origin, size, self._state.log_root(size)).body()
            note = SignedNote(body, (self._signer.sign(body),)).text()
            self._state.save_checkpoint(size, note)
            return note

    def latest(self, fresh: bool) -> str:
        """The latest checkpoint with its cosignatures (a new one first if ``fresh``)."""
        if self._signer is None:
            raise NotFound(
                f"node {self.node} signs no checkpoints: its operator has not set [audit] key; the log is "
                "kept but cannot be verified until they do"
            )
        if fresh:
            self.issue()
        latest = self._state.latest_checkpoint()
        if latest is None:
            raise NotFound(f"node {self.node} has issued no checkpoint yet (its log is empty); try later")
        return latest[1]

    def add_cosignature(self, witness: str, body: str, line: str) -> None:
        """Keep ``witness``'s cosignature ``line`` of the checkpoint ``body`` (which this node
        must have signed exactly so)."""
        verifier = self._cosigners.get(witness)
        if verifier is None:
            raise PermissionDenied(
                f"node {witness} is not a witness of node {self.node}; its operator lists it under "
                "[[audit.witness]] to take its cosignatures",
                "NOT_A_WITNESS",
            )
        try:
            checkpoint = Checkpoint.parse(body)
            signature_note = parse_note(body + "\n" + line)
        except NoteError as err:
            raise InvalidQuery(f"not a cosigned checkpoint: {err}") from None
        if signature_note.body != body or len(signature_note.signatures) != 1:
            raise InvalidQuery("hand back exactly one signature line, for exactly the checkpoint body given")
        with self._lock:
            kept = dict(self._state.checkpoints(checkpoint.size, 1))
            note_text = kept.get(checkpoint.size)
            if note_text is None or checkpoint.origin != self.origin:
                raise NotFound(f"node {self.node} issued no checkpoint of size {checkpoint.size}")
            note = parse_note(note_text)
            if note.body != body:
                raise InvalidQuery(
                    f"the checkpoint of size {checkpoint.size} is not the one node {self.node} signed"
                )
            try:
                sig = verifier.verify(signature_note)
            except NoteError as err:
                raise InvalidQuery(f"the cosignature of {witness} does not verify: {err}") from None
            if sig is None:
                raise InvalidQuery(f"the line is not a cosignature by {witness}'s key")
            self._state.save_checkpoint(checkpoint.size, note.with_signature(sig).text())
        log.info("node %s: %s cosigned checkpoint %d", self.node, witness, checkpoint.size)

    def run(self, stop: threading.Event, every: float) -> None:
        """Issue a checkpoint every ``every`` seconds (if the log grew) until ``stop`` is set."""
        while not stop.wait(every):
            try:
                self.issue()
            except Exception:
                log.exception("node %s: could not issue a checkpoint", self.node)
