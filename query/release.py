"""What comes back from a query: noisy estimates with their noise scale and 95% interval.

A node produces a :class:`Release`; the coordinator combines several into a
:class:`FederatedRelease`. Both are plain frozen dataclasses; :mod:`accord.protos.convert` puts them on
the wire. Nothing here is row-level: every row is one group of a public category list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, Literal

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "RATIO_PART_ALPHA",
    "Cell",
    "Estimate",
    "FederatedRelease",
    "Mechanism",
    "Release",
    "ReleaseColumn",
    "ReleaseRow",
    "ratio_estimate",
    "suppressed_row",
]

ALPHA = 0.05
"""Two-sided miss probability of every interval Accord reports."""
CONFIDENCE = 1 - ALPHA
"""The level of every interval Accord reports (95%)."""
RATIO_PART_ALPHA = ALPHA / 2
"""Each part of a mean (its noisy sum and its noisy count) gets a ``1 - ALPHA/2`` interval; by the
union bound both hold at once with probability at least ``1 - ALPHA``, so the mean's interval
derived from them (:func:`ratio_estimate`) is a joint 95% interval."""


class Mechanism(enum.Enum):
    DISCRETE_LAPLACE = "discrete_laplace"  # integer-valued: counts, sums of integer columns
    LAPLACE = "laplace"  # real-valued: sums of float columns
    RATIO = "ratio"  # a mean: noisy sum / noisy count (post-processing, no noise of its own)
    DISCRETE_GAUSSIAN = "discrete_gaussian"  # secure aggregation: the sum of the nodes' shares


@dataclass(frozen=True)
class Estimate:
    """One released number. ``noise_scale`` is the Laplace scale b of the noise added
    (0 for a ratio, whose uncertainty comes from its parts); ``[ci_low, ci_high]`` holds the
    exact aggregate with probability at least 95% over the noise."""

    value: float
    noise_scale: float
    ci_low: float
    ci_high: float
    mechanism: Mechanism


@dataclass(frozen=True)
class Cell:
    """One aggregate in one group. For AVG, ``sum`` and ``count`` carry the noisy parts so that
    several nodes' means can be combined as (sum of sums) / (sum of counts)."""

    estimate: Estimate
    sum: Estimate | None = None
    count: Estimate | None = None


@dataclass(frozen=True)
class ReleaseColumn:
    """An output column: a group key (``function`` None) or an aggregate."""

    name: str
    function: AggregateFunction | None
    column: str | None  # the dataset column read; None for COUNT(*)

    @property
    def is_group(self) -> bool:
        return self.function is None


@dataclass(frozen=True)
class ReleaseRow:
    """``group`` holds the group-key values in GROUP BY order; ``cells`` one per aggregate,
    in the order the aggregates appear among ``columns``.

    Under an agreement with a minimum group size, ``support`` is the group's noisy ``COUNT(*)``
    (what suppression judges), and in the combined answer a group judged too small is
    ``suppressed``: it has no cells and no support, only its key (marked, never dropped)."""

    group: tuple[Literal, ...]
    cells: tuple[Cell, ...]
    suppressed: bool = False
    support: Estimate | None = None

    def __post_init__(self) -> None:
        if self.suppressed and (self.cells or self.support is not None):
            raise ValueError("a suppressed group carries no values")


def suppressed_row(group: tuple[Literal, ...]) -> ReleaseRow:
    """The row of a group too small to release."""
    return ReleaseRow(group, (), suppressed=True)


@dataclass(frozen=True)
class Release:
    """One node's answer to one query."""

    query_id: str
    node: str
    dataset: str
    columns: tuple[ReleaseColumn, ...]
    rows: tuple[ReleaseRow, ...]
    epsilon: Epsilon
    execution_seconds: float = 0.0
    agreement: str = ""
    min_group_size: int = 0
    """The agreement's minimum reported group size, in people (0: no suppression)."""
    suppress_below: int = 0
    """The noisy row count (``support``) a group needs to be released: ``min_group_size`` times
    the dataset's ``max_rows_per_person`` (enough rows guarantee enough people)."""

    def __post_init__(self) -> None:
        if not isinstance(self.epsilon, Epsilon):
            raise TypeError("a release's epsilon must be an Epsilon")


@dataclass(frozen=True)
class FederatedRelease:
    """The coordinator's combined answer. ``missing`` maps each node that should have answered
    but did not to the reason; ``partial`` is true when it is non-empty."""

    query_id: str
    dataset: str
    columns: tuple[ReleaseColumn, ...]
    rows: tuple[ReleaseRow, ...]
    epsilon: Epsilon
    contributing_nodes: tuple[str, ...]
    missing: dict[str, str] = field(default_factory=dict)
    agreement: str = ""
    min_group_size: int = 0
    """The largest minimum group size (people) of the contributing nodes (0: no suppression)."""
    suppress_below: int = 0
    """The combined noisy row count under which a group was suppressed (the nodes' largest)."""
    aggregation: str = "independent"
    """``secure``: secure aggregation, one distributed discrete Gaussian noise, an (epsilon,
    ``delta``) guarantee, the coordinator saw only the sum; ``independent``: each node's own
    Laplace noise, pure epsilon (``delta`` "0")."""
    delta: str = "0"
    shares: tuple[tuple[bytes, bytes, bytes], ...] = ()
    """Secure aggregation: each participant's signed masked share (body, certificate DER,
    signature), for the analyst's client to check the sum itself."""

    def __post_init__(self) -> None:
        if not isinstance(self.epsilon, Epsilon):
            raise TypeError("a release's epsilon must be an Epsilon")
        if self.aggregation not in ("secure", "independent"):
            raise ValueError("aggregation is secure or independent")

    @property
    def partial(self) -> bool:
        return bool(self.missing)


def ratio_estimate(
    total: float,
    count: float,
    total_interval: tuple[float, float],
    count_interval: tuple[float, float],
    bounds: tuple[float, float] | None,
) -> Estimate:
    """A mean from a noisy sum and a noisy count, by post-processing only (node and coordinator).

    The point estimate is ``total / max(count, 1)``. The interval is conservative: from the sum's
    and the count's ``1 - ALPHA/2`` intervals, floor the count interval at 1 (a mean exists only
    when the exact count is a positive integer) and take the extreme corner ratios (``s / c`` is
    monotone in each argument for ``c > 0``). With the column's public ``bounds`` the estimate and
    both ends are clamped to them: every clamped value averaged lies within them, so the exact
    mean does too, and clamping is post-processing that keeps the coverage. Mechanism ``RATIO``,
    noise scale 0: a mean adds no noise of its own.
    """
    s_lo, s_hi = total_interval
    c_lo, c_hi = max(count_interval[0], 1.0), max(count_interval[1], 1.0)
    corners = (s_lo / c_lo, s_lo / c_hi, s_hi / c_lo, s_hi / c_hi)
    value, low, high = total / max(count, 1.0), min(corners), max(corners)
    if bounds is not None:
        lower, upper = bounds
        value, low, high = (min(max(x, lower), upper) for x in (value, low, high))
    return Estimate(value, 0.0, low, high, Mechanism.RATIO)
