"""zCDP to (epsilon, delta)-DP, exactly enough for budgets (pure Python, both sides use it).

A secure-aggregated query is given the zCDP budget ``rho`` with ``rho + 2 sqrt(rho ln(1/delta)) <=
epsilon`` (Bun and Steinke 2016, Prop. 1.3: rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)),
delta)-DP for every delta > 0), rounded *down* to an exact fraction: the query is then (epsilon,
delta)-DP, and the ledger charges the analyst's ``epsilon`` exactly, as for every other query.
The proof is written down in ``docs/secure-aggregation.md``.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from accord.errors import InternalError, InvalidQuery, Violation

__all__ = ["rho_for", "to_epsilon"]

_ROUND = Fraction(1, 10**12)
_UNIT = 10**30


@functools.lru_cache(maxsize=1024)
def rho_for(epsilon: Fraction, delta: Fraction) -> Fraction:
    """The largest zCDP ``rho`` (rounded down to a fraction) with ``rho + 2 sqrt(rho ln(1/delta))
    <= epsilon``: ``sqrt(rho) = sqrt(epsilon + L) - sqrt(L)``, ``L = ln(1/delta)``. Cached: a node
    sees the same few (epsilon, delta) again and again."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise InternalError("secure aggregation needs epsilon > 0 and 0 < delta < 1")
    big_l = -math.log(float(delta))
    root = math.sqrt(float(epsilon) + big_l) - math.sqrt(big_l)
    # Float error is ~1e-15 relative; 1e-9 below is always on the safe side, and to_epsilon checks.
    # Rounded down to a multiple of 10^-30 (a short exact text in the shares and the log).
    rho = Fraction(math.floor(Fraction(root * root) * (1 - Fraction(1, 10**9)) * _UNIT), _UNIT)
    if rho <= 0:
        raise InvalidQuery(
            f"epsilon {epsilon} is too small for secure aggregation at delta {delta} (no zCDP budget is left "
            "after the conversion); ask with a larger epsilon",
            (Violation("epsilon", "too small"),),
        )
    while to_epsilon(rho, delta) > epsilon:  # pragma: no cover - the margin above makes this rare
        rho = Fraction(math.floor(rho * (1 - Fraction(1, 10**6)) * _UNIT), _UNIT)
    return rho


def to_epsilon(rho: Fraction, delta: Fraction) -> Fraction:
    """An upper bound (rounded up) on ``rho + 2 sqrt(rho ln(1/delta))``: the epsilon that
    ``rho``-zCDP gives at ``delta``."""
    big_l = -math.log(float(delta))
    value = float(rho) + 2.0 * math.sqrt(float(rho) * big_l)
    return Fraction(value) * (1 + _ROUND) + _ROUND
