"""Turn a query's exact per-group values into a noisy :class:`accord.query.release.Release`.

The pipeline is: split the query's epsilon over its distinct measurements, noise each
measurement's whole group vector once (:mod:`node.dp`), then assemble one cell per aggregate
and group by post-processing alone (means are noisy sum / noisy count). Post-processing never
touches the exact values again, so it costs no budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Protocol

from accord.errors import InternalError
from accord.node import dp
from accord.node.plan import Measurement, distinct_measurements, measurements_for
from accord.query.model import Aggregate, AggregateFunction, GroupColumn, Literal, Query
from accord.query.release import Cell, Estimate, Mechanism, Release, ReleaseColumn, ReleaseRow
from accord.query.schema import DatasetSchema

RATIO_PART_ALPHA = dp.ALPHA / 2
"""Each part of a mean gets a (1 - alpha/2) interval; by the union bound both hold at once
with probability >= 1 - alpha, so the derived ratio interval is a joint 95% interval."""


class ExactValues(Protocol):
    """What the engine hands over: the group keys and, per measurement, one exact value per group
    aligned with ``groups``. (:class:`accord.node.backend.ExactAnswer` has this shape.)"""

    @property
    def groups(self) -> tuple[tuple[Literal, ...], ...]: ...

    @property
    def values(self) -> Mapping[Measurement, Sequence[int | float]]: ...


def _clamp(x: float, lower: float, upper: float) -> float:
    return min(max(x, lower), upper)


def ratio_estimate(total: Estimate, count: Estimate, lower: float, upper: float) -> Estimate:
    """A mean from a noisy sum and a noisy count, by post-processing only.

    The point estimate is ``total / max(count, 1)`` clamped to ``[lower, upper]`` (the exact mean
    of clamped values always lies there). The interval is conservative: take the sum and count
    intervals at 1 - alpha/2 each, floor the count interval at 1 (a mean exists only when the
    exact count is a positive integer), take the extreme corner ratios (``s / c`` is monotone in
    each argument for ``c > 0``) and clamp to the bounds.
    """
    value = _clamp(total.value / max(count.value, 1.0), lower, upper)
    s_lo, s_hi = dp.interval(total.value, total.mechanism, total.noise_scale, RATIO_PART_ALPHA)
    c_lo, c_hi = dp.interval(count.value, count.mechanism, count.noise_scale, RATIO_PART_ALPHA)
    c_lo, c_hi = max(c_lo, 1.0), max(c_hi, 1.0)
    corners = (s_lo / c_lo, s_lo / c_hi, s_hi / c_lo, s_hi / c_hi)
    ci_low = _clamp(min(corners), lower, upper)
    ci_high = _clamp(max(corners), lower, upper)
    return Estimate(value, 0.0, ci_low, ci_high, Mechanism.RATIO)


def _columns(query: Query) -> tuple[ReleaseColumn, ...]:
    out: list[ReleaseColumn] = []
    for o in query.outputs:
        if isinstance(o, GroupColumn):
            out.append(ReleaseColumn(o.alias, None, o.column))
        else:
            out.append(ReleaseColumn(o.alias, o.function, o.column))
    return tuple(out)


def _bounds(agg: Aggregate, schema: DatasetSchema) -> tuple[float, float]:
    spec = schema.column(agg.column) if agg.column is not None else None
    if spec is None or spec.lower is None or spec.upper is None:
        raise InternalError(f"AVG over {agg.column!r} reached the release without declared bounds")
    return float(spec.lower), float(spec.upper)


def _cell(
    agg: Aggregate,
    parts: tuple[Measurement, ...],
    noisy: Mapping[Measurement, tuple[Estimate, ...]],
    i: int,
    schema: DatasetSchema,
) -> Cell:
    if agg.function is AggregateFunction.AVG:
        total, count = noisy[parts[0]][i], noisy[parts[1]][i]
        lower, upper = _bounds(agg, schema)
        return Cell(ratio_estimate(total, count, lower, upper), sum=total, count=count)
    return Cell(noisy[parts[0]][i])


def build_release(
    query: Query,
    schema: DatasetSchema,
    exact: ExactValues,
    epsilon: Fraction,
    query_id: str,
    node_name: str,
    elapsed: float,
) -> Release:
    """Noise ``exact`` at ``epsilon`` and assemble the release of ``query``.

    Each distinct measurement is noised once at ``epsilon / len(distinct_measurements)`` and
    reused by every aggregate that needs it.
    """
    groups = tuple(exact.groups)
    eps_m = dp.epsilon_split(query, epsilon)
    noisy: dict[Measurement, tuple[Estimate, ...]] = {}
    for m in distinct_measurements(query):
        values = exact.values.get(m)
        if values is None or len(values) != len(groups):
            raise InternalError(f"the engine returned no aligned values for {m.kind.value}({m.column})")
        noisy[m] = dp.release_measurement(m, schema, values, eps_m)

    plan = tuple(zip(query.aggregates, measurements_for(query), strict=True))
    rows = tuple(
        ReleaseRow(tuple(key), tuple(_cell(agg, parts, noisy, i, schema) for agg, parts in plan))
        for i, key in enumerate(groups)
    )
    # Small-cell suppression goes here: it is post-processing of ``rows`` (noisy values only),
    # applied before the release is stored or returned. Not implemented yet.
    return Release(
        query_id=query_id,
        node=node_name,
        dataset=query.dataset,
        columns=_columns(query),
        rows=rows,
        epsilon=epsilon,
        execution_seconds=elapsed,
    )


__all__ = ["RATIO_PART_ALPHA", "ExactValues", "build_release", "ratio_estimate"]
