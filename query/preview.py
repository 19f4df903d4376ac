"""What a preview of a query says (``accord query --explain``): its cost, and the noise each number
would carry, before anything is spent.

A preview is computed from public metadata alone (the dataset's declared bounds and limits, the
agreement, the epsilon): no data is read, so it costs no budget. A node sends a
:class:`NodeExplanation`; the coordinator adds the combined noise of the federated answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from accord.query.epsilon import MAX_EPSILON, Epsilon
from accord.query.release import Mechanism

__all__ = [
    "AggregatePreview",
    "BudgetLine",
    "FederatedExplanation",
    "NodeExplanation",
    "NoisePreview",
    "least_epsilon",
]


@dataclass(frozen=True)
class NoisePreview:
    """The noise one released number would get: mechanism, scale, 95% interval half-width."""

    mechanism: Mechanism
    noise_scale: float
    half_width: float


@dataclass(frozen=True)
class AggregatePreview:
    """One output aggregate: ``estimate`` for COUNT and SUM; ``sum`` and ``count`` (its noisy
    parts) for AVG, whose interval depends on the group's size. ``epsilon_for_target`` is the least
    epsilon giving ``estimate`` a half-width within the target asked (None without a target)."""

    name: str
    estimate: NoisePreview | None = None
    sum: NoisePreview | None = None
    count: NoisePreview | None = None
    epsilon_for_target: Epsilon | None = None


@dataclass(frozen=True)
class BudgetLine:
    """One analyst's budget under one agreement at one node, exactly: what the analyst and the
    agreement (all its analysts) have spent and have left, against the agreement's caps."""

    agreement: str
    purpose: str
    analyst: str
    analyst_spent: Epsilon
    per_analyst: Epsilon
    agreement_spent: Epsilon
    total: Epsilon
    per_query: Epsilon
    answered: int
    valid_until: str

    @property
    def analyst_remaining(self) -> Epsilon:
        return self.per_analyst.left_after(self.analyst_spent)

    @property
    def agreement_remaining(self) -> Epsilon:
        return self.total.left_after(self.agreement_spent)

    @property
    def remaining(self) -> Epsilon:
        """What the analyst can still spend: the smaller of their own and the agreement's."""
        return min(self.analyst_remaining, self.agreement_remaining)


@dataclass(frozen=True)
class NodeExplanation:
    """One node's preview of a query: what it would cost (``epsilon``), the analyst's budget before
    it (``budget``), whether it fits, and the noise of each aggregate."""

    node: str
    dataset: str
    agreement: str
    epsilon: Epsilon
    budget: BudgetLine
    fits: bool
    aggregates: tuple[AggregatePreview, ...]
    groups: int
    min_group_size: int


@dataclass(frozen=True)
class FederatedExplanation:
    """The coordinator's preview: each node's, the nodes that would refuse (with why), and the noise
    of the combined answer over the nodes that would answer (``combined``, in output order)."""

    query_id: str
    dataset: str
    nodes: tuple[NodeExplanation, ...]
    refused: Mapping[str, str]
    combined: tuple[AggregatePreview, ...]


_SIGNIFICANT = 2
_STEPS = 400


def _unit(x: Fraction) -> Fraction:
    """One unit in the last of :data:`_SIGNIFICANT` significant digits of ``x`` (> 0)."""
    exponent = len(str(int(x))) - 1 if x >= 1 else -len(str(int(1 / x)))
    while Fraction(10) ** exponent > x:
        exponent -= 1
    while Fraction(10) ** (exponent + 1) <= x:
        exponent += 1
    return Fraction(10) ** (exponent - _SIGNIFICANT + 1)


def least_epsilon(
    width_at: Callable[[Fraction], float], epsilon: Fraction, width: float, target: float
) -> Epsilon | None:
    """The least epsilon, at two significant digits, for which ``width_at(epsilon)`` (a half-width
    that shrinks as epsilon grows) is at most ``target``; ``width`` is the half-width at
    ``epsilon``. None when no epsilon up to :data:`~accord.query.epsilon.MAX_EPSILON` reaches it
    (or the number carries no noise)."""
    if not (target > 0 and width > 0 and math.isfinite(target) and math.isfinite(width)):
        return None
    guess = epsilon * Fraction(width) / Fraction(target)  # half-widths scale as 1/epsilon
    unit = _unit(guess)
    candidate = math.ceil(guess / unit) * unit
    for _ in range(_STEPS):  # up until it is reached
        if candidate > MAX_EPSILON:
            return None
        if width_at(candidate) <= target:
            break
        candidate += _unit(candidate)
    else:
        return None
    for _ in range(_STEPS):  # then down while it still is
        lower = candidate - _unit(candidate - _unit(candidate) / 2)
        if lower <= 0 or width_at(lower) > target:
            break
        candidate = lower
    return Epsilon(candidate)
