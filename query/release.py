"""What comes back from a query: noisy estimates with their noise scale and 95% interval.

A node produces a :class:`Release`; the coordinator combines several into a
:class:`FederatedRelease`. Both are plain frozen dataclasses; :mod:`accord.protos.convert` puts them on
the wire. Nothing here is row-level: every row is one group of a public category list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction

from accord.query.model import AggregateFunction, Literal

CONFIDENCE = 0.95  # the level of every interval Accord reports


class Mechanism(enum.Enum):
    DISCRETE_LAPLACE = "discrete_laplace"  # integer-valued: counts, sums of integer columns
    LAPLACE = "laplace"  # real-valued: sums of float columns
    RATIO = "ratio"  # a mean: noisy sum / noisy count (post-processing, no noise of its own)


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
    in the order the aggregates appear among ``columns``."""

    group: tuple[Literal, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Release:
    """One node's answer to one query."""

    query_id: str
    node: str
    dataset: str
    columns: tuple[ReleaseColumn, ...]
    rows: tuple[ReleaseRow, ...]
    epsilon: Fraction
    execution_seconds: float = 0.0


@dataclass(frozen=True)
class FederatedRelease:
    """The coordinator's combined answer. ``missing`` maps each node that should have answered
    but did not to the reason; ``partial`` is true when it is non-empty."""

    query_id: str
    dataset: str
    columns: tuple[ReleaseColumn, ...]
    rows: tuple[ReleaseRow, ...]
    epsilon: Fraction
    contributing_nodes: tuple[str, ...]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.missing)
