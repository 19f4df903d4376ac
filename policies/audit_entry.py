"""The entries of a node's audit log, as canonical bytes.

Every entry is one JSON object in a canonical form, so that a node, a witness and an auditor who
hold the same entry hold the same bytes (and the same Merkle leaf hash):

- UTF-8 text that is pure ASCII (``\\uXXXX`` escapes for anything else), no insignificant
  whitespace, members sorted by name, no newline (an entries file is one entry per line);
- values are strings, integers (never floats: epsilon is a decimal string, exactly as the analyst
  gave it), booleans, lists, and objects of the same;
- ``"v": 1`` (this encoding's version) and ``"type"``, one of :data:`TYPES`.

:func:`decode` refuses any bytes that are not exactly the canonical form of a valid entry, so
a changed byte that still parses as JSON is caught too. What each type holds (all times are
UTC, ISO 8601 with a ``Z``):

``decision``
    every request the node acted on: the fields of
    :class:`~accord.policies.decision.Decision` (node, kind, outcome, at, caller, analyst,
    query_id, agreement, purpose, dataset, uses, epsilon, reason, payload_digest,
    envelope_digest, release_digest).
``start``
    the node started: ``node``, ``at``, ``version`` (Accord's), ``config_digest`` (SHA-256 of
    the configuration file's bytes).
``agreement``
    an agreement file loaded at start-up, changed since the log last saw it, or gone:
    ``node``, ``at``, ``agreement``, ``change`` (``loaded``, ``changed``, ``removed``),
    ``digest`` (SHA-256 of the file; empty when removed).
``consent``
    the consent register changed: ``node``, ``at``, ``register_version``, ``counts`` (per
    purpose, how many people opted in and out: numbers, never identifiers).
``witness``
    this node, as a witness, found another node's checkpoint inconsistent with one it had
    cosigned: ``node``, ``at``, ``log`` (the other node), ``problem`` (what did not match),
    ``cosigned`` and ``offered`` (each ``{"size": n, "root": hex}``).

No entry holds a row value, a released number or a person identifier: a decision names its
release and the analyst's signed query by their SHA-256 digests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from accord.policies.decision import OUTCOMES, Decision

__all__ = [
    "ENCODING_VERSION",
    "TYPES",
    "AuditEntry",
    "EntryError",
    "decision_entry",
    "decode",
    "encode",
    "timestamp",
]

ENCODING_VERSION = 1
TYPES = ("decision", "start", "agreement", "consent", "witness")
_REQUIRED = {
    "decision": ("node", "kind", "outcome", "at", "caller"),
    "start": ("node", "at", "version", "config_digest"),
    "agreement": ("node", "at", "agreement", "change", "digest"),
    "consent": ("node", "at", "register_version", "counts"),
    "witness": ("node", "at", "log", "problem", "cosigned", "offered"),
}


def _no_float(text: str) -> Any:
    raise ValueError(f"{text[:20]!r} is not an integer")


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_float)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
_DECISION_FIELDS = frozenset(f.name for f in dataclasses.fields(Decision)) | {"type", "v"}


def _check_decision(data: Mapping[str, Any]) -> None:
    """What :class:`Decision` would refuse, checked without building one (verify reads millions)."""
    unknown = set(data) - _DECISION_FIELDS
    if unknown:
        raise EntryError(f"a decision has no field {sorted(unknown)[0]!r}")
    outcome, reason = data.get("outcome"), data.get("reason", "")
    if outcome not in OUTCOMES:
        raise EntryError(f"outcome must be one of {', '.join(OUTCOMES)}")
    if (outcome in ("refused", "failed")) != bool(reason):
        raise EntryError("a refusal or failure, and only those, has a reason code")
    for key, value in data.items():
        if key not in ("uses", "v") and not isinstance(value, str):
            raise EntryError(f"a decision's {key} is a string")
    uses = data.get("uses", [])
    if not isinstance(uses, list) or not all(
        isinstance(u, list) and len(u) == 2 and all(isinstance(x, str) for x in u) for u in uses
    ):
        raise EntryError("a decision's uses are [field, use] pairs of strings")


class EntryError(ValueError):
    """Bytes that are not the canonical encoding of a valid audit entry."""


def timestamp(at: datetime) -> str:
    """``at`` in UTC as an entry writes times (``2026-12-03T13:51:53.123456Z``)."""
    if at.tzinfo is None:
        raise ValueError("an entry's time must be timezone-aware")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise EntryError(f"{where} is a float; entries hold integers and decimal strings only")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EntryError(f"{where} has a key that is not a string")
            _check_value(item, f"{where}.{key}")
        return
    raise EntryError(f"{where} is a {type(value).__name__}, which an entry cannot hold")


def encode(fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an entry with ``fields`` (which must include ``type``; ``v`` is
    added). Raises :class:`EntryError` for a value an entry cannot hold or a missing field."""
    data = dict(fields)
    data["v"] = ENCODING_VERSION
    _validate(data)
    return _ENCODER.encode(data).encode("ascii")


def _validate(data: Mapping[str, Any], values: bool = True) -> None:
    kind = data.get("type")
    if kind not in TYPES:
        raise EntryError(f"type must be one of {', '.join(TYPES)}, not {str(kind)[:40]!r}")
    if data.get("v") != ENCODING_VERSION:
        raise EntryError(f"encoding version must be {ENCODING_VERSION}")
    missing = [k for k in _REQUIRED[str(kind)] if k not in data]
    if missing:
        raise EntryError(f"a {kind} entry needs {', '.join(missing)}")
    if values:  # decoded JSON holds nothing but JSON values, floats refused while parsing
        for key, value in data.items():
            _check_value(value, key)
    at = data["at"]
    try:
        parsed = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        raise EntryError(f"at is not an ISO 8601 time: {str(at)[:40]!r}") from None
    if not str(at).endswith("Z") or parsed.tzinfo is None:
        raise EntryError("at must be UTC, ending in Z")


@dataclass(frozen=True)
class AuditEntry:
    """One decoded entry: its canonical ``raw`` bytes and their ``fields``."""

    raw: bytes
    fields: Mapping[str, Any]

    @property
    def type(self) -> str:
        return str(self.fields["type"])

    @property
    def at(self) -> datetime:
        return datetime.fromisoformat(str(self.fields["at"]).replace("Z", "+00:00"))

    def decision(self) -> Decision:
        """The decision a ``decision`` entry records."""
        if self.type != "decision":
            raise EntryError(f"a {self.type} entry is not a decision")
        f = dict(self.fields)
        del f["type"], f["v"]
        f["at"] = self.at
        f["uses"] = tuple(tuple(u) for u in f.get("uses", ()))
        try:
            return Decision(**f)
        except (TypeError, ValueError) as err:
            raise EntryError(f"not a valid decision: {err}") from None


def decode(raw: bytes) -> AuditEntry:
    """The entry ``raw`` encodes; :class:`EntryError` unless ``raw`` is exactly canonical."""
    try:
        data = _DECODER.decode(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise EntryError("not ASCII JSON with integers and strings only") from None
    if not isinstance(data, dict):
        raise EntryError("not a JSON object")
    _validate(data, values=False)
    if _ENCODER.encode(data).encode("ascii") != raw:
        raise EntryError("not in canonical form (members sorted, no spaces, ASCII escapes)")
    if data["type"] == "decision":
        _check_decision(data)
    return AuditEntry(raw, data)


def decision_entry(decision: Decision) -> bytes:
    """The canonical entry recording ``decision``."""
    return encode({**decision.fields(), "type": "decision"})
