"""What a node says about each request it acts on: the stable reason code of a refusal, the draft of
a :class:`~accord.policies.decision.Decision` filled in as the request goes through the checks, and
the default place decisions go (one JSON line on the ``accord.decisions`` logger)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from accord.errors import AccordError, AnswerTimeExceeded, BudgetExhausted, PermissionDenied
from accord.node.state import Answer
from accord.policies.decision import Decision
from accord.policies.signing import SignedQuery
from accord.policies.verifying import VerifiedQuery

__all__ = ["FAILURES", "Draft", "answer_record", "log_decision", "reason_of", "same_query"]

decisions = logging.getLogger("accord.decisions")


def reason_of(err: BaseException) -> str:
    """The stable reason code of a refusal or failure (for decisions and the register)."""
    if isinstance(err, PermissionDenied):
        return err.reason
    if isinstance(err, BudgetExhausted):
        return "BUDGET_EXHAUSTED"
    if isinstance(err, AnswerTimeExceeded):
        return AnswerTimeExceeded.reason
    if isinstance(err, AccordError):
        return {
            "InvalidQuery": "INVALID_QUERY",
            "NotFound": "NOT_FOUND",
            "ResourceLimit": "RESOURCE_LIMIT",
            "Unavailable": "UNAVAILABLE",
            "DeadlineExceeded": "DEADLINE_EXCEEDED",
        }.get(type(err).__name__, "REFUSED")
    return "INTERNAL"


FAILURES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", AnswerTimeExceeded.reason, "INTERNAL"})
"""Reason codes that are the node's trouble, not a refusal of the request."""


def log_decision(decision: Decision) -> None:
    decisions.info("%s", decision.to_json())


@dataclass
class Draft:
    """What is known of a decision so far, filled in as the request goes through the checks."""

    node: str
    kind: str
    caller: str
    analyst: str = ""
    query_id: str = ""
    agreement: str = ""
    purpose: str = ""
    dataset: str = ""
    uses: tuple[tuple[str, str], ...] = ()
    payload_digest: str = ""
    envelope_digest: str = ""
    known_agreement: bool = False
    aggregation: str = ""
    participants: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def decide(self, outcome: str, **more: str) -> Decision:
        return Decision(
            node=self.node,
            kind=self.kind,
            outcome=outcome,
            at=self.at,
            caller=self.caller,
            analyst=self.analyst,
            query_id=self.query_id,
            agreement=self.agreement,
            purpose=self.purpose,
            dataset=self.dataset,
            uses=self.uses,
            payload_digest=self.payload_digest,
            envelope_digest=self.envelope_digest,
            aggregation=self.aggregation,
            participants=self.participants,
            **more,
        )


def same_query(stored: Answer, digest: bytes, verified: VerifiedQuery) -> None:
    """Refuse an id the analyst already used for another query (another SQL, epsilon or agreement)."""
    if stored.request_digest != digest:
        raise PermissionDenied(
            f"query id {verified.request.query_id!r} was already used by analyst {verified.analyst.name!r} "
            "for a different query; use a fresh id (a UUID) for every new query and reuse an id only to "
            "retry the same query",
            "QUERY_ID_REUSED",
            {"analyst": verified.analyst.name, "query_id": verified.request.query_id},
        )


def answer_record(
    verified: VerifiedQuery, signed: SignedQuery, dataset: str, release: bytes, agreement: str
) -> Answer:
    """What the state records of an answer to ``signed`` (a release, or a secure-aggregation share)."""
    return Answer(
        analyst=verified.analyst.name,
        query_id=verified.request.query_id,
        request_digest=verified.payload.request_digest(),
        payload_digest=signed.payload_digest(),
        envelope=signed.to_bytes(),
        dataset=dataset,
        epsilon=str(verified.request.epsilon),
        answered_at=datetime.now(UTC),
        release=release,
        agreement=agreement,
    )
