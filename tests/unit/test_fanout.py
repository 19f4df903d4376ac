"""The coordinator's fan-out on its thread pool, with stand-in node clients (no network)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest

from accord.coordinator.config import NodeEndpoint
from accord.coordinator.nodes import FanOutPool, NodeClient, fan_out
from accord.errors import DeadlineExceeded, InternalError
from accord.policies.signing import SignedQuery
from accord.protos import convert
from accord.protos.v1 import node_pb2
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction
from accord.query.release import Release, ReleaseColumn
from tests.conftest import TestPki

SIGNED = SignedQuery(b"payload", b"signature", b"certificate")


def _release(node: str, query_id: str = "q-1") -> Release:
    return Release(
        query_id,
        node,
        "t",
        (ReleaseColumn("count", AggregateFunction.COUNT, None),),
        (),
        Epsilon(Fraction(1)),
    )


class FakeClient:
    """Answers like NodeClient.answer: (release, reported seconds), or raises."""

    def __init__(self, name: str, answer: Any, seconds: float | None = 0.01, delay: float = 0.0) -> None:
        self.name = name
        self._answer = answer
        self._seconds = seconds
        self._delay = delay
        self.unreachable: list[str] = []
        self.threads: list[str] = []
        self.requests: list[Any] = []

    def answer(self, request: Any, deadline_at: float) -> tuple[Release, float | None]:
        self.threads.append(threading.current_thread().name)
        self.requests.append(request)
        time.sleep(self._delay)
        if isinstance(self._answer, BaseException):
            raise self._answer
        return self._answer, self._seconds

    def mark_unreachable(self, reason: str) -> None:
        self.unreachable.append(reason)


@pytest.fixture
def pool() -> Iterator[FanOutPool]:
    p = FanOutPool(4)
    yield p
    p.close()


def test_answers_are_collected_with_the_slowest_reported_time(pool: FanOutPool) -> None:
    a = FakeClient("a", _release("a"), seconds=0.02, delay=0.05)
    b = FakeClient("b", _release("b"), seconds=0.07)
    c = FakeClient("c", _release("c"), seconds=None)
    result = fan_out([a, b, c], SIGNED, "q-1", 5.0, pool)  # type: ignore[list-item]
    assert sorted(result.releases) == ["a", "b", "c"] and result.errors == {}
    assert result.node_seconds == {"a": 0.02, "b": 0.07}
    assert result.slowest_node_seconds == 0.07
    assert all(t.startswith("accord-fanout") for t in a.threads + b.threads + c.threads)
    # every node got the same request, carrying the analyst's envelope exactly
    sent = {id(r) for r in a.requests + b.requests + c.requests}
    assert len(sent) == 1 and convert.signed_query_from_pb(a.requests[0].query) == SIGNED


def test_the_calls_run_at_once(pool: FanOutPool) -> None:
    clients = [FakeClient(n, _release(n), delay=0.2) for n in "abc"]
    started = time.perf_counter()
    fan_out(clients, SIGNED, "q-1", 5.0, pool)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 0.5


def test_failures_cost_only_their_node(pool: FanOutPool) -> None:
    good = FakeClient("a", _release("a"))
    late = FakeClient("b", DeadlineExceeded("node b: deadline exceeded before the call could start"))
    liar = FakeClient("c", _release("someone-else"))
    malformed = FakeClient("d", InternalError("bad estimate"))
    result = fan_out([good, late, liar, malformed], SIGNED, "q-1", 5.0, pool)  # type: ignore[list-item]
    assert list(result.releases) == ["a"]
    assert isinstance(result.errors["b"], DeadlineExceeded) and late.unreachable == ["deadline exceeded"]
    assert isinstance(result.errors["c"], InternalError) and "answered as node" in result.errors["c"].message
    assert isinstance(result.errors["d"], InternalError) and "malformed" in result.errors["d"].message
    assert liar.unreachable == [] and malformed.unreachable == []
    assert result.node_seconds == {"a": 0.01}


def test_a_call_past_its_deadline_is_not_sent(pki: TestPki) -> None:
    """A call that waited for a pool thread until its query's deadline passed fails at once with
    DeadlineExceeded instead of being sent with a non-positive timeout."""
    client = NodeClient(NodeEndpoint("county", "127.0.0.1:9"), pki.coordinator)
    try:
        with pytest.raises(DeadlineExceeded, match="before the call could start"):
            client.answer(
                node_pb2.AnswerRequest(query=convert.signed_query_to_pb(SIGNED)), time.monotonic() - 1
            )
    finally:
        client.close()
