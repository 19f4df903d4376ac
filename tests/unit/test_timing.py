"""Server timings in trailing metadata: written and read back, hostile values ignored."""

from __future__ import annotations

from accord.rpc.timing import NODE_SECONDS, format_seconds, seconds_from_metadata


def test_round_trip_and_missing_key() -> None:
    metadata = (("other", "x"), (NODE_SECONDS, format_seconds(0.0123456)))
    assert seconds_from_metadata(metadata, NODE_SECONDS) == 0.012346
    assert seconds_from_metadata(metadata, "accord-absent") is None
    assert seconds_from_metadata(None, NODE_SECONDS) is None
    assert format_seconds(-1.0) == "0.000000"


def test_bytes_values_are_read() -> None:
    assert seconds_from_metadata(((NODE_SECONDS, b"1.5"),), NODE_SECONDS) == 1.5


def test_malformed_values_are_ignored() -> None:
    for bad in ("nan", "inf", "-1", "abc", b"\xff", ""):
        assert seconds_from_metadata(((NODE_SECONDS, bad),), NODE_SECONDS) is None
