"""What a node must measure to answer a query, independent of how it is computed or noised.

Every aggregate becomes one or two *measurements* (the noisy quantities actually released):
``COUNT(*)`` and ``COUNT(col)`` are counts, ``SUM(col)`` is a clamped sum and ``AVG(col)`` is a
clamped sum plus a count of non-null values, released as their ratio. A query under an agreement
with a minimum group size also measures its *support*, ``COUNT(*)`` per group (:data:`SUPPORT`,
shared with the query's own ``COUNT(*)`` if it has one), to decide which groups are too small to
release. The engine computes the
exact value of each measurement per group (:mod:`accord.node.duckdb.engine`); the DP layer adds noise
(:mod:`node.dp`). The query's epsilon is split equally across its measurements.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from accord.query.model import AggregateFunction, Literal, Query
from accord.query.schema import DatasetSchema

__all__ = [
    "SUPPORT",
    "MeasureKind",
    "Measurement",
    "distinct_measurements",
    "group_keys",
    "measurements_for",
]


class MeasureKind(enum.Enum):
    COUNT = "count"  # number of (bounded) rows; with a column: rows where it is not NULL
    SUM = "sum"  # sum of the column clamped to its declared bounds (NULLs contribute 0)


@dataclass(frozen=True)
class Measurement:
    kind: MeasureKind
    column: str | None  # None only for COUNT(*)


SUPPORT = Measurement(MeasureKind.COUNT, None)
"""``COUNT(*)`` per group: how small-cell suppression judges a group's size."""


def measurements_for(query: Query) -> tuple[tuple[Measurement, ...], ...]:
    """For each aggregate of the query (in order), the measurements it needs."""
    out: list[tuple[Measurement, ...]] = []
    for agg in query.aggregates:
        if agg.function is AggregateFunction.COUNT:
            out.append((Measurement(MeasureKind.COUNT, agg.column),))
        elif agg.function is AggregateFunction.SUM:
            out.append((Measurement(MeasureKind.SUM, agg.column),))
        else:
            out.append((Measurement(MeasureKind.SUM, agg.column), Measurement(MeasureKind.COUNT, agg.column)))
    return tuple(out)


def distinct_measurements(query: Query, support: bool = False) -> tuple[Measurement, ...]:
    """The measurements to compute, each once, in first-use order; with ``support``, also
    :data:`SUPPORT` (last, unless the query counts rows itself)."""
    seen: dict[Measurement, None] = {}
    for group in measurements_for(query):
        for m in group:
            seen.setdefault(m, None)
    if support:
        seen.setdefault(SUPPORT, None)
    return tuple(seen)


def group_keys(query: Query, schema: DatasetSchema) -> tuple[tuple[Literal, ...], ...]:
    """Every group the release must contain: the cross product of the public category lists of
    the GROUP BY columns, in declaration order. Empty groups are released too: leaving them out
    would reveal that they are empty. A query without GROUP BY has one group, ``()``."""
    lists: list[tuple[Literal, ...]] = []
    for name in query.group_by:
        spec = schema.column(name)
        assert spec is not None and spec.categories is not None, "validated before planning"
        lists.append(spec.categories)
    return tuple(itertools.product(*lists))
