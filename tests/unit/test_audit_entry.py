"""Audit entries are canonical bytes: what a node encodes decodes to the same fields and bytes,
and any other spelling of them (spaces, order, escapes, floats, unknown types) is refused, so a
changed byte that still parses is caught."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from accord.policies.audit_entry import EntryError, decision_entry, decode, encode, timestamp
from accord.policies.decision import Decision

AT = datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=UTC)


def _decision(**more: object) -> Decision:
    fields: dict[str, object] = {
        "node": "county",
        "kind": "query",
        "outcome": "answered",
        "at": AT,
        "caller": "coordinator/coordinator",
        "analyst": "alice",
        "query_id": "q-1",
        "agreement": "dsa-1",
        "purpose": "HOUSING",
        "dataset": "residents",
        "uses": (("*", "count"), ("age", "sum")),
        "epsilon": "1/2",
        "payload_digest": hashlib.sha256(b"p").hexdigest(),
        "envelope_digest": hashlib.sha256(b"e").hexdigest(),
        "release_digest": hashlib.sha256(b"r").hexdigest(),
    }
    fields.update(more)
    return Decision(**fields)  # type: ignore[arg-type]


def test_a_decision_round_trips_byte_for_byte() -> None:
    """Property: a decision's entry decodes to the same decision, and re-encodes to the same bytes;
    it is one line of sorted, spaceless ASCII with its version and type."""
    raw = decision_entry(_decision(analyst="zoë"))
    entry = decode(raw)
    assert entry.decision() == _decision(analyst="zoë") and entry.raw == raw
    assert encode({k: v for k, v in entry.fields.items() if k != "v"}) == raw
    assert raw.isascii() and b"\n" not in raw and b" " not in raw
    assert raw.startswith(b'{"agreement":"dsa-1","analyst":"zo\\u00eb"') and b'"v":1' in raw


@pytest.mark.parametrize(
    "spelling",
    [
        b'{"type": "start","at":"2026-12-03T14:00:00Z","node":"n","version":"1","config_digest":"","v":1}',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"start","version":"1","v":1}',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"\\u006e","type":"start","v":1,"version":"1"}',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"start","v":1.0,"version":"1"}',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"start","v":1,"version":"1"}\n',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"start","v":2,"version":"1"}',
        b'{"at":"2026-12-03T14:00:00+00:00","config_digest":"","node":"n","type":"start","v":1,"version":"1"}',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"stop","v":1,"version":"1"}',
        b'{"at":"2026-12-03T14:00:00Z","node":"n","type":"start","v":1,"version":"1"}',
        b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"start","v":1,"version":NaN}',
        b'["not", "an", "object"]',
        b"\xff",
    ],
)
def test_other_spellings_and_invalid_entries_are_refused(spelling: bytes) -> None:
    """Property: a space, another member order, an unneeded escape, a float, a trailing newline, another
    version, a non-UTC time, an unknown type, a missing field, NaN, a non-object and non-ASCII
    bytes are all refused (the canonical spelling of the same start entry is accepted)."""
    good = b'{"at":"2026-12-03T14:00:00Z","config_digest":"","node":"n","type":"start","v":1,"version":"1"}'
    assert decode(good).type == "start"
    with pytest.raises(EntryError):
        decode(spelling)


def test_decisions_that_are_not_valid_are_refused() -> None:
    """Property: a decision entry with an unknown outcome, a refusal without a reason, an unknown
    field or a non-string value is refused when decoded."""
    raw = decision_entry(_decision())
    for old, new in (
        (b'"outcome":"answered"', b'"outcome":"guessed"'),
        (b'"outcome":"answered"', b'"outcome":"refused"'),
        (b'"query_id":"q-1"', b'"query_id":1'),
        (b'"analyst":"alice"', b'"analyst":"alice","zzz":"x"'),
    ):
        changed = raw.replace(old, new)
        assert changed != raw
        with pytest.raises(EntryError):
            decode(changed)


def test_encoding_refuses_what_an_entry_cannot_hold() -> None:
    """Property: floats, bytes and naive times cannot be encoded; times are written in UTC."""
    base = {"type": "start", "node": "n", "at": timestamp(AT), "version": "1", "config_digest": ""}
    with pytest.raises(EntryError, match="float"):
        encode(base | {"version": 1.5})
    with pytest.raises(EntryError, match="bytes"):
        encode(base | {"version": b"1"})
    with pytest.raises(ValueError, match="timezone"):
        timestamp(datetime(2026, 1, 1))
    assert timestamp(AT.astimezone(timezone(timedelta(hours=5)))) == "2026-12-03T14:00:00.123456Z"
