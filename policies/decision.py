"""One value per decision a node takes: who asked what, under which agreement and purpose, whether
it was allowed (or why not), and what it cost.

Every request a node acts on (a query answered, answered again or refused; a preview; a budget
shown) ends in exactly one :class:`Decision`. The node logs it (one JSON line); the audit log
records the same value. It never holds a row value, a released number, a person identifier or
anything the analyst wrote (a refusal's message can quote the SQL's literals, so only its reason
code is kept): the SQL text is in the signed envelope the node keeps, the release is named by
its digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

__all__ = ["OUTCOMES", "SECURE_FIELDS", "Decision"]

OUTCOMES = ("answered", "answered-again", "refused", "failed", "previewed", "shown", "joined")
SECURE_FIELDS = ("aggregation", "participants", "key_digest", "noise")
"""A secure-aggregated query's own fields, recorded only when set (older entries never had them)."""


@dataclass(frozen=True)
class Decision:
    """One decision of node ``node`` (see the module docstring).

    ``kind`` is what was asked (``query``, ``explain``, ``budget``); ``outcome`` one of
    :data:`OUTCOMES` (``failed``: the node could not answer, e.g. its data was unavailable);
    ``reason`` the refusal's or failure's stable code (empty when allowed); ``uses`` each
    field the query reads and how (``("age", "sum")``; ``("*", "count")`` for ``COUNT(*)``);
    ``epsilon`` what was charged (``"0"`` when nothing was); digests are SHA-256 in hex: of the
    signed payload, of the whole signed envelope (payload, signature, certificate) and of the
    release bytes sent (for a secure-aggregated answer: of the noisy share the node keeps, which
    never leaves it unmasked).

    A secure-aggregated query (``joined``: the node took part and made its key; ``answered``: its
    masked share was sent) also records ``aggregation`` (``secure``), the ``participants`` (comma
    separated), the SHA-256 of this node's X25519 public key for the query (``key_digest``) and
    its noise share's parameters (``noise``); never the node's value, noisy or not."""

    node: str
    kind: str
    outcome: str
    at: datetime
    caller: str
    analyst: str = ""
    query_id: str = ""
    agreement: str = ""
    purpose: str = ""
    dataset: str = ""
    uses: tuple[tuple[str, str], ...] = ()
    epsilon: str = "0"
    reason: str = ""
    payload_digest: str = ""
    envelope_digest: str = ""
    release_digest: str = ""
    aggregation: str = ""
    participants: str = ""
    key_digest: str = ""
    noise: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if (self.outcome in ("refused", "failed")) != bool(self.reason):
            raise ValueError("a refusal or failure, and only those, has a reason code")
        if self.at.tzinfo is None:
            raise ValueError("a decision's time must be timezone-aware")

    @property
    def allowed(self) -> bool:
        return self.outcome not in ("refused", "failed")

    def fields(self) -> dict[str, Any]:
        """The decision as JSON values (UTC time with a Z, uses as pairs)."""
        # Every field is a string but ``at`` and ``uses``: no deep copy is needed (``asdict`` would
        # make one, and this runs for every decision a node takes).
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        data["at"] = self.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        data["uses"] = [list(u) for u in self.uses]
        for key in SECURE_FIELDS:
            if not data[key]:
                del data[key]
        return data

    def to_json(self) -> str:
        """The decision as one line of JSON (members sorted, UTC time)."""
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


_FIELDS = fields(Decision)
