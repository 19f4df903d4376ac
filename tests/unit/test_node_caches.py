"""The node's pure-function caches: Laplace calibration and compiled queries. A cached answer must be
exactly what the uncached computation gives, and refusals must never be cached."""

from __future__ import annotations

from fractions import Fraction

import pytest

from accord.errors import InvalidQuery, PermissionDenied
from accord.node import dp
from accord.node.service import NodeService
from accord.policies.identity import Identity
from accord.policies.signing import QuerySigner
from accord.query.release import Release
from tests.conftest import TestPki
from tests.signing import node_service, sign, signer
from tests.unit.nodedata import pums

CALLER = Identity("coordinator", "coordinator")


@pytest.mark.parametrize(
    ("sens", "eps", "integer"),
    [
        (1, Fraction(1), True),
        (3, Fraction(1, 3), True),
        (500000.0, Fraction(1, 2), False),
        (0, Fraction(1), True),
    ],
)
def test_cached_calibration_equals_a_fresh_one(sens: int | float, eps: Fraction, integer: bool) -> None:
    uncached = dp.calibrate.__wrapped__(sens, eps, integer)
    assert dp.calibrate(sens, eps, integer) == uncached
    assert dp.calibrate(sens, eps, integer) == uncached  # second call: from the cache


def test_calibration_errors_are_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(Exception, match="epsilon per measurement must be positive"):
            dp.calibrate(1, Fraction(0), True)


def _ask(service: NodeService, alice: QuerySigner, sql: str) -> Release:
    got: list[Release] = []

    def keep(release: Release) -> bytes:
        got.append(release)
        return b"x"

    service.answer(CALLER, sign(alice, sql), keep)
    return got[0]


def test_repeated_sql_is_compiled_once_and_answered_afresh(pki: TestPki) -> None:
    service = node_service(pki, (pums(),))
    alice = signer(pki.analyst())
    sql = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"
    first, second = _ask(service, alice, sql), _ask(service, alice, sql)
    info = service._compile.cache_info()
    assert info.hits >= 1 and info.currsize == 1
    assert first.columns == second.columns
    assert [r.group for r in first.rows] == [r.group for r in second.rows]
    assert first.query_id != second.query_id  # two releases, each with its own noise draw


def test_refused_sql_is_refused_every_time(pki: TestPki) -> None:
    service = node_service(pki, (pums(),))
    alice = signer(pki.analyst())
    for sql in ("SELECT COUNT(*) FROM nowhere", "SELECT MAX(age) FROM pums"):
        for _ in range(2):
            with pytest.raises((InvalidQuery, PermissionDenied)):
                _ask(service, alice, sql)
    assert service._compile.cache_info().currsize == 0
