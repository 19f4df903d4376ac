"""Turn a query's exact per-group values into a noisy :class:`accord.query.release.Release`.

The pipeline is: split the query's epsilon over its distinct measurements, noise each
measurement's whole group vector once (:mod:`node.dp`), then assemble one cell per aggregate
and group by post-processing alone (means are noisy sum / noisy count). Post-processing never
touches the exact values again, so it costs no budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from accord.errors import InternalError
from accord.node import dp
from accord.node.plan import SUPPORT, Measurement, distinct_measurements, measurements_for
from accord.query.epsilon import Epsilon
from accord.query.model import Aggregate, AggregateFunction, GroupColumn, Literal, Query
from accord.query.release import (
    RATIO_PART_ALPHA,
    Cell,
    Estimate,
    Release,
    ReleaseColumn,
    ReleaseRow,
    ratio_estimate,
)
from accord.query.schema import DatasetSchema


class ExactValues(Protocol):
    """What the engine hands over: the group keys and, per measurement, one exact value per group
    aligned with ``groups``. (:class:`accord.node.backend.ExactAnswer` has this shape.)"""

    @property
    def groups(self) -> tuple[tuple[Literal, ...], ...]: ...

    @property
    def values(self) -> Mapping[Measurement, Sequence[int | float]]: ...


def mean_estimate(total: Estimate, count: Estimate, bounds: tuple[float, float]) -> Estimate:
    """A node's mean from its noisy sum and count: the intervals of the parts at ``1 - ALPHA/2``
    (OpenDP's accuracy for each noise), then :func:`accord.query.release.ratio_estimate`."""
    return ratio_estimate(
        total.value,
        count.value,
        dp.interval(total.value, total.mechanism, total.noise_scale, RATIO_PART_ALPHA),
        dp.interval(count.value, count.mechanism, count.noise_scale, RATIO_PART_ALPHA),
        bounds,
    )


def release_columns(query: Query) -> tuple[ReleaseColumn, ...]:
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
        mean = mean_estimate(total, count, _bounds(agg, schema))
        return Cell(mean, sum=total, count=count)
    return Cell(noisy[parts[0]][i])


def build_release(
    query: Query,
    schema: DatasetSchema,
    exact: ExactValues,
    epsilon: Epsilon,
    query_id: str,
    node_name: str,
    elapsed: float,
    min_group_size: int = 0,
    agreement: str = "",
) -> Release:
    """Noise ``exact`` at ``epsilon`` and assemble the release of ``query``.

    Each distinct measurement is noised once at ``epsilon / len(distinct_measurements)`` and
    reused by every aggregate that needs it. With ``min_group_size`` (an agreement's minimum
    reported group size) each group's ``COUNT(*)`` is one of the measurements (``exact`` must hold
    it: :data:`~accord.node.plan.SUPPORT`) and every row carries it as its ``support``: the noisy
    group size that small-cell suppression judges, in rows. A person has at most
    ``max_rows_per_person`` rows, so the release asks for ``min_group_size`` times that many rows
    (``suppress_below``): enough rows always means enough people. The published table is
    suppressed where it is assembled, by the *combined* noisy count
    (:mod:`accord.coordinator.combine`): a node holding nobody in a public category would otherwise
    suppress that group for the whole federation.
    Suppression is post-processing of noisy values, so it costs nothing beyond measuring the count.
    """
    groups = tuple(exact.groups)
    support = min_group_size > 0
    eps_m = dp.epsilon_split(query, epsilon.value, support)
    noisy: dict[Measurement, tuple[Estimate, ...]] = {}
    for m in distinct_measurements(query, support):
        values = exact.values.get(m)
        if values is None or len(values) != len(groups):
            raise InternalError(f"the engine returned no aligned values for {m.kind.value}({m.column})")
        noisy[m] = dp.release_measurement(m, schema, values, eps_m)

    plan = tuple(zip(query.aggregates, measurements_for(query), strict=True))
    rows = [
        ReleaseRow(
            tuple(key),
            tuple(_cell(agg, parts, noisy, i, schema) for agg, parts in plan),
            support=noisy[SUPPORT][i] if support else None,
        )
        for i, key in enumerate(groups)
    ]
    return Release(
        query_id=query_id,
        node=node_name,
        dataset=query.dataset,
        columns=release_columns(query),
        rows=tuple(rows),
        epsilon=epsilon,
        execution_seconds=elapsed,
        agreement=agreement,
        min_group_size=min_group_size,
        suppress_below=min_group_size * schema.max_rows_per_person,
    )


__all__ = ["ExactValues", "build_release", "mean_estimate", "release_columns"]
