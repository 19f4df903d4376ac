"""What a node remembers, behind one interface: every query it answered, with the release it sent,
and its privacy-budget ledger.

A node must never answer one query twice with different noise, and never let an analyst spend
more than an agreement allows. Every answer is recorded, and its cost charged, in one durable
transaction *before* its release leaves the node (:meth:`NodeState.record`): the charge is checked
against the agreement's caps inside that transaction, so concurrent queries can never overspend,
and a query id seen again returns the recorded release byte for byte (:meth:`NodeState.find`),
never charged twice, after a restart too. The decision's audit-log entry joins the same
transaction, and every other decision (a refusal, a retry, a preview) is appended to the log
(:meth:`NodeState.append`) before its reply leaves the node.

The audit log is an append-only list of canonical entries (:mod:`accord.policies.audit_entry`)
kept as a Merkle tree of perfect subtrees (:mod:`accord.policies.merkle_tree`), with the signed
checkpoints the node issued over it (and the cosignatures its witnesses added), what this node
last cosigned of each other node's log (as a witness), and the digests the log last recorded
(agreements, the configuration, the consent register) so that only changes are recorded.

What is stored about an answer (:class:`Answer`): who asked (the analyst's name), the query id,
the agreement it was asked under, digests of the request and of the signed payload, the envelope
itself (the analyst's signed query: SQL text, epsilon, time, signature, certificate), the dataset,
the epsilon, when it was answered, and the release (noisy aggregates). The ledger holds, per
agreement and analyst, the epsilon spent and the queries answered, and per agreement how many
queries were refused and why. Never a row value or a person identifier.

Backends: :class:`~accord.node.state.memory.MemoryState` (forgets everything on restart: tests and
benchmarks) and :class:`~accord.node.state.sqlite.SqliteState` (durable). One contract test runs
against both (``tests/unit/test_state.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from accord.errors import ConfigError
from accord.policies.budget import Charge, Spent
from accord.policies.merkle_tree import consistency_path, inclusion_path, tree_root
from accord.query.epsilon import Epsilon

__all__ = ["Answer", "LedgerLine", "NodeState", "StateInUse", "Usage"]


class StateInUse(ConfigError):
    """The state file is held by another running node (another process has it open)."""


@dataclass(frozen=True)
class Answer:
    """One answered query as the node keeps it. ``(analyst, query_id)`` identifies it: each analyst
    names their own queries, so nobody can take another analyst's query id."""

    analyst: str
    query_id: str
    request_digest: bytes
    """SHA-256 of what makes two requests the same query (everything the analyst signed but the
    time of signing): a retry re-signed later is the same query; another SQL text is not."""
    payload_digest: bytes
    """SHA-256 of the signed payload: what the analyst signed, in its one canonical form."""
    envelope: bytes
    dataset: str
    epsilon: str
    answered_at: datetime
    release: bytes
    """The serialized release, sent byte for byte on every retry."""
    agreement: str = ""

    def __post_init__(self) -> None:
        if not self.analyst or not self.query_id:
            raise ValueError("an answer needs its analyst and query id")
        if len(self.request_digest) != 32 or len(self.payload_digest) != 32:
            raise ValueError("digests are SHA-256 (32 bytes)")
        if self.answered_at.tzinfo is None:
            raise ValueError("answered_at must be timezone-aware")


@dataclass(frozen=True)
class LedgerLine:
    """What one analyst has spent under one agreement at this node, and in how many answers."""

    agreement: str
    analyst: str
    spent: Epsilon
    answered: int


@dataclass(frozen=True)
class Usage:
    """One agreement's use at this node: queries answered, refused (by reason), epsilon spent."""

    answered: int = 0
    spent: Epsilon = field(default_factory=Epsilon.zero)
    refused: Mapping[str, int] = field(default_factory=dict)

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


class NodeState(abc.ABC):
    """A node's durable memory. Implementations are thread-safe."""

    @abc.abstractmethod
    def find(self, analyst: str, query_id: str) -> Answer | None:
        """The recorded answer to ``analyst``'s query ``query_id``, or None."""

    @abc.abstractmethod
    def record(self, answer: Answer, charge: Charge | None = None, entries: Sequence[bytes] = ()) -> Answer:
        """Record ``answer``, charge ``charge`` and append ``entries`` to the audit log in one
        durable transaction and return what is recorded for its ``(analyst, query_id)``:
        ``answer`` itself, or the answer recorded first if there was one (the first writer wins,
        so concurrent requests with one id yield one release; nothing is charged or appended
        then). Raises :class:`~accord.errors.BudgetExhausted` (recording nothing) when the charge
        does not fit the agreement's caps. Only once this returns may the release leave the node."""

    @abc.abstractmethod
    def append(
        self,
        entries: Sequence[bytes],
        refusal: tuple[str, str] | None = None,
        seen: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        """Append ``entries`` to the audit log in one durable transaction, counting ``refusal``
        (agreement, reason code) for the register and remembering ``seen`` ((kind, key) -> value)
        in the same transaction; return the log's size after it."""

    @abc.abstractmethod
    def take_part(self, analyst: str, query_id: str, participants: str, entries: Sequence[bytes] = ()) -> str:
        """The participant set of ``analyst``'s secure-aggregated query ``query_id``: the one recorded
        before, or (the first time) ``participants``; ``entries`` are appended when it is
        ``participants``, in one
        transaction that need not wait for the disk (it survives a crash of the process and becomes
        durable with the next durable commit; joining releases nothing, and the set that binds is
        the one recorded with the answer's share). A node takes part in one query id with one
        participant set only."""

    @abc.abstractmethod
    def seen(self, kind: str) -> dict[str, str]:
        """What the log last recorded of ``kind`` (key -> value), as :meth:`append` left it."""

    @abc.abstractmethod
    def log_size(self) -> int:
        """How many entries the audit log holds."""

    @abc.abstractmethod
    def log_entries(self, start: int, end: int) -> list[bytes]:
        """Entries [start, end) of the audit log (``end`` at most :meth:`log_size`)."""

    @abc.abstractmethod
    def log_hash(self, level: int, index: int) -> bytes:
        """The hash of the complete block of leaves [index·2^level, (index+1)·2^level)."""

    def log_root(self, size: int) -> bytes:
        """The Merkle root of the first ``size`` entries."""
        return tree_root(size, self.log_hash)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return inclusion_path(index, size, self.log_hash)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return consistency_path(size1, size2, self.log_hash)

    @abc.abstractmethod
    def save_checkpoint(self, size: int, note: str) -> None:
        """Keep the signed checkpoint ``note`` of the tree of ``size`` entries (replacing the note
        kept for that size: the same checkpoint with more cosignatures)."""

    @abc.abstractmethod
    def checkpoints(self, since: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        """The kept checkpoints of size ``since`` or more, smallest first, at most ``limit``."""

    @abc.abstractmethod
    def latest_checkpoint(self) -> tuple[int, str] | None:
        """The checkpoint of the largest size kept, or None."""

    @abc.abstractmethod
    def witnessed(self, log: str) -> tuple[int, bytes, str] | None:
        """What this node, as a witness, last cosigned of ``log``: (size, root, note)."""

    @abc.abstractmethod
    def set_witnessed(self, log: str, size: int, root: bytes, note: str) -> None:
        """Remember (durably) that this node cosigned ``note`` of ``log`` (size ``size``, ``root``)."""

    @abc.abstractmethod
    def spent(self, agreement: str, analyst: str) -> Spent:
        """What ``analyst`` and all analysts together have spent under ``agreement``."""

    @abc.abstractmethod
    def ledger(self) -> list[LedgerLine]:
        """Every (agreement, analyst)'s spending, sorted."""

    @abc.abstractmethod
    def usage(self) -> dict[str, Usage]:
        """Every agreement's use (answered, refused by reason, spent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's resources (files, locks)."""

    def __enter__(self) -> NodeState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def usage_from(lines: list[LedgerLine], refusals: Mapping[str, Mapping[str, int]]) -> dict[str, Usage]:
    """Per agreement usage from the ledger lines and the refusal counts (shared by the backends)."""
    out: dict[str, Usage] = {}
    for agreement in sorted({line.agreement for line in lines} | set(refusals)):
        mine = [line for line in lines if line.agreement == agreement]
        spent = Epsilon.zero()
        for line in mine:
            spent = spent + line.spent
        out[agreement] = Usage(sum(line.answered for line in mine), spent, dict(refusals.get(agreement, {})))
    return out
