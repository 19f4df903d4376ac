"""Combine the nodes' releases of one query into one :class:`accord.query.release.FederatedRelease`.

Every node answers the same query over its own people, so the federation's exact COUNT or SUM is
the sum of the nodes' exact values, and its exact mean is (sum of sums) / (sum of counts) — never
the mean of the nodes' means. Each node added independent noise, so:

* COUNT / SUM: ``value = Σ v_i``. The noise is ``Σ X_i`` with ``X_i`` Laplace(``b_i``) (or discrete
  Laplace); the 95% interval is ``value ± h`` with ``h`` from :func:`coordinator.intervals.half_width`
  over all the ``b_i`` (exact for the sum, not a normal approximation). The reported
  ``noise_scale`` is ``sqrt(Σ b_i²)``: the scale of the single Laplace whose variance ``2 b²``
  equals the variance ``Σ 2 b_i²`` of the combined noise (so ``noise_scale · sqrt(2)`` is its
  standard deviation). It summarises the size of the noise; the interval, not ``noise_scale``,
  is what carries the exact coverage. The mechanism stays ``DISCRETE_LAPLACE`` when every part is
  integer-valued, otherwise ``LAPLACE``.
* AVG: the sum parts and count parts are combined as above (carried in ``Cell.sum`` and
  ``Cell.count`` with their own 95% intervals). The estimate is
  ``combined_sum / max(combined_count, 1)``. Its interval takes 97.5% intervals of the combined
  sum and count (``alpha = 0.025`` each, so by the union bound both hold at once with probability
  >= 95%), floors the count interval at 1 and takes the extreme corner ratios (``s / c`` is
  monotone in each argument for ``c > 0``). When the column's public bounds ``[L, U]`` are given
  (the coordinator has them from the nodes' catalogs) the estimate and both interval ends are
  clamped to them: every clamped value the nodes averaged lies in ``[L, U]``, so the true mean
  does too, and clamping is post-processing that keeps the coverage. Mechanism ``RATIO``,
  ``noise_scale`` 0.

Rows are aligned by group key (the union of the nodes' keys, in order of first appearance going
through the nodes by name); a node without a group contributes nothing to it.

Small-cell suppression: under an agreement with a minimum group size each node measures every
group's noisy ``COUNT(*)`` (its ``support``, in rows). A combined group is suppressed when the
combined noisy count (the sum of the nodes' supports) is below the largest threshold of the
contributing nodes (``suppress_below``: the minimum in people times the rows one person may
contribute, so that enough rows always means enough people), or
when a node sent it already suppressed (its values are missing, so no combined value would be
whole). A suppressed group keeps its key and carries no values. Judging the combined count, not
each node's, is what the published table needs: a district node holds nobody living in the other
district, so judging each node's count would suppress every group for the whole federation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from accord.coordinator import intervals
from accord.errors import InternalError, Unavailable
from accord.query.model import AggregateFunction, Literal
from accord.query.release import (
    RATIO_PART_ALPHA,
    Cell,
    Estimate,
    FederatedRelease,
    Mechanism,
    Release,
    ReleaseColumn,
    ReleaseRow,
    ratio_estimate,
    suppressed_row,
)


def combine_estimates(parts: Sequence[Estimate], alpha: float = intervals.ALPHA) -> Estimate:
    """The sum of independent noisy estimates, with its exact ``1 - alpha`` interval.

    ``noise_scale`` of the result is ``sqrt(Σ b_i²)`` (the single-Laplace scale with the same
    variance); the interval comes from the distribution of the sum of the noises.
    """
    if not parts:
        raise InternalError("nothing to combine")
    for p in parts:
        if p.mechanism is Mechanism.RATIO:
            raise InternalError("a ratio cannot be summed; combine its sum and count parts")
    value = math.fsum(p.value for p in parts)
    scales = [p.noise_scale for p in parts]
    mechanisms = [p.mechanism for p in parts]
    h = intervals.half_width(scales, mechanisms, alpha)
    scale = math.hypot(*scales)  # sqrt(Σ b_i²), without overflowing for very large scales
    discrete = all(m is Mechanism.DISCRETE_LAPLACE for m in mechanisms)
    mechanism = Mechanism.DISCRETE_LAPLACE if discrete else Mechanism.LAPLACE
    return Estimate(value, scale, value - h, value + h, mechanism)


def combine_ratio(
    sums: Sequence[Estimate], counts: Sequence[Estimate], bounds: tuple[float, float] | None = None
) -> Cell:
    """A federated mean from the nodes' noisy sum and count parts (see the module docstring)."""
    total = combine_estimates(sums)
    count = combine_estimates(counts)
    s_h = intervals.half_width([p.noise_scale for p in sums], [p.mechanism for p in sums], RATIO_PART_ALPHA)
    c_h = intervals.half_width(
        [p.noise_scale for p in counts], [p.mechanism for p in counts], RATIO_PART_ALPHA
    )
    mean = ratio_estimate(
        total.value,
        count.value,
        (total.value - s_h, total.value + s_h),
        (count.value - c_h, count.value + c_h),
        bounds,
    )
    return Cell(mean, sum=total, count=count)


def _check_same(releases: Mapping[str, Release], what: str, key: str) -> None:
    by_value: dict[str, list[str]] = {}
    for name in sorted(releases):
        by_value.setdefault(repr(getattr(releases[name], key)), []).append(name)
    if len(by_value) > 1:
        described = "; ".join(f"{', '.join(nodes)}: {value}" for value, nodes in by_value.items())
        raise InternalError(f"nodes disagree on the {what} of query results ({described})")


def _check_columns(releases: Mapping[str, Release]) -> tuple[ReleaseColumn, ...]:
    names = sorted(releases)
    reference = releases[names[0]].columns
    differing = [n for n in names if releases[n].columns != reference]
    if differing:
        agree = [n for n in names if releases[n].columns == reference]
        raise InternalError(
            f"nodes declare different result columns for the same query: {', '.join(differing)} "
            f"disagree with {', '.join(agree)}; their dataset schemas differ"
        )
    return reference


def combine(
    query_id: str,
    releases: Mapping[str, Release],
    missing: Mapping[str, str],
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> FederatedRelease:
    """Combine the nodes' answers (``releases`` keyed by node name) into one release.

    ``missing`` (node → reason) is passed through; the result is partial when it is non-empty.
    ``bounds`` (column → public ``(lower, upper)``) clamps combined means (see the module docstring).
    Raises :class:`~accord.errors.Unavailable` when no node answered and
    :class:`~accord.errors.InternalError` when the answers cannot belong to one query.
    """
    if not releases:
        if missing:
            reasons = "; ".join(f"{node} ({reason})" for node, reason in sorted(missing.items()))
            raise Unavailable(f"no node answered query {query_id}: {reasons}; retry later with the same id")
        raise Unavailable(f"no node was asked to answer query {query_id}")
    names = sorted(releases)
    for name in names:
        if releases[name].query_id != query_id:
            raise InternalError(f"node {name} answered query {releases[name].query_id}, not {query_id}")
    columns = _check_columns(releases)
    _check_same(releases, "dataset", "dataset")
    _check_same(releases, "epsilon", "epsilon")
    _check_same(releases, "agreement", "agreement")
    first = releases[names[0]]
    epsilon = first.epsilon
    aggregates = [c for c in columns if not c.is_group]
    minimum = max(r.min_group_size for r in releases.values())
    # The rows a group needs: each node's minimum times its rows per person (a node that did not
    # say falls back to its minimum in people, as if one row a person).
    threshold = max(max(r.suppress_below, r.min_group_size) for r in releases.values())

    rows_by_group: dict[tuple[Literal, ...], list[ReleaseRow]] = {}
    for name in names:
        for row in releases[name].rows:
            if len(row.cells) != (0 if row.suppressed else len(aggregates)):
                raise InternalError(
                    f"node {name} sent {len(row.cells)} cell(s) in a row of a query with "
                    f"{len(aggregates)} aggregate(s)"
                )
            rows_by_group.setdefault(tuple(row.group), []).append(row)

    rows = tuple(
        _combine_row(group, per_node, aggregates, threshold, bounds or {})
        for group, per_node in rows_by_group.items()
    )
    return FederatedRelease(
        query_id=query_id,
        dataset=first.dataset,
        columns=columns,
        rows=rows,
        epsilon=epsilon,
        contributing_nodes=tuple(names),
        missing=dict(missing),
        agreement=first.agreement,
        min_group_size=minimum,
        suppress_below=threshold,
    )


def _combine_row(
    group: tuple[Literal, ...],
    per_node: Sequence[ReleaseRow],
    aggregates: Sequence[ReleaseColumn],
    minimum: int,
    bounds: Mapping[str, tuple[float, float]],
) -> ReleaseRow:
    """One combined group, suppressed as the module docstring says."""
    if any(row.suppressed for row in per_node):
        return suppressed_row(group)
    support = None
    if minimum > 0:
        # A node that measured no support (its agreement sets no minimum) adds nothing to the
        # combined count: the group can only look smaller, so it is suppressed more, never less.
        supports = [row.support for row in per_node if row.support is not None]
        support = combine_estimates(supports) if supports else None
        if support is None or support.value < minimum:
            return suppressed_row(group)
    cells = tuple(
        _combine_cell(col, [row.cells[i] for row in per_node], bounds) for i, col in enumerate(aggregates)
    )
    return ReleaseRow(group, cells, support=support)


def _combine_cell(
    column: ReleaseColumn, cells: Sequence[Cell], bounds: Mapping[str, tuple[float, float]]
) -> Cell:
    if column.function is AggregateFunction.AVG:
        sums: list[Estimate] = []
        counts: list[Estimate] = []
        for cell in cells:
            if cell.sum is None or cell.count is None:
                raise InternalError(f"a mean ({column.name}) arrived without its sum and count parts")
            sums.append(cell.sum)
            counts.append(cell.count)
        return combine_ratio(sums, counts, bounds.get(column.column or ""))
    return Cell(combine_estimates([cell.estimate for cell in cells]))


__all__ = ["combine", "combine_estimates", "combine_ratio"]
