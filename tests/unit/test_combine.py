"""Combining node releases: sums add, means are ratios of combined parts, mismatches are refused."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from accord.coordinator import intervals
from accord.coordinator.combine import combine
from accord.errors import InternalError, Unavailable
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction
from accord.query.release import Cell, Estimate, Mechanism, Release, ReleaseColumn, ReleaseRow

D = Mechanism.DISCRETE_LAPLACE
L = Mechanism.LAPLACE

COLUMNS = (
    ReleaseColumn("district", None, "district"),
    ReleaseColumn("n", AggregateFunction.COUNT, None),
    ReleaseColumn("total", AggregateFunction.SUM, "income"),
    ReleaseColumn("mean_age", AggregateFunction.AVG, "age"),
)


def _est(value: float, scale: float, mech: Mechanism = D) -> Estimate:
    a = intervals.half_width([scale], [mech])
    return Estimate(value, scale, value - a, value + a, mech)


def _avg_cell(s: float, c: float, s_scale: float, c_scale: float) -> Cell:
    total, count = _est(s, s_scale, L), _est(c, c_scale)
    ratio = s / max(c, 1.0)
    return Cell(Estimate(ratio, 0.0, ratio - 1, ratio + 1, Mechanism.RATIO), sum=total, count=count)


def _release(node: str, rows: dict[str, tuple[float, float, float, float]], **kw: object) -> Release:
    """rows: district -> (count, income sum, age sum, age count); scales differ per node."""
    scale = {"a": 2.0, "b": 3.0, "c": 5.0}[node[-1]]
    out = []
    for district, (n, inc, age_sum, age_n) in rows.items():
        out.append(
            ReleaseRow(
                (district,),
                (
                    Cell(_est(n, scale)),
                    Cell(_est(inc, scale * 1000, L)),
                    _avg_cell(age_sum, age_n, scale * 100, scale),
                ),
            )
        )
    fields: dict[str, object] = {
        "query_id": "q1",
        "node": node,
        "dataset": "citizens",
        "columns": COLUMNS,
        "rows": tuple(out),
        "epsilon": Epsilon(Fraction(1, 2)),
    }
    fields.update(kw)
    return Release(**fields)  # type: ignore[arg-type]


A = {"north": (100.0, 5_000_000.0, 4000.0, 100.0), "south": (10.0, 200_000.0, 900.0, 10.0)}
B = {"north": (50.0, 1_000_000.0, 1000.0, 50.0), "south": (1000.0, 9_000_000.0, 20_000.0, 1000.0)}
C = {"north": (7.0, 1000.0, 210.0, 7.0), "south": (3.0, 100.0, 30.0, 3.0)}


def test_counts_and_sums_add_with_the_exact_interval_of_the_summed_noise() -> None:
    fed = combine("q1", {"node-a": _release("node-a", A), "node-b": _release("node-b", B)}, {})
    assert fed.contributing_nodes == ("node-a", "node-b")
    assert not fed.partial
    rows = {r.group: r for r in fed.rows}
    north = rows[("north",)]
    n, total, _ = north.cells
    assert n.estimate.value == 150.0
    assert n.estimate.mechanism is D
    assert n.estimate.noise_scale == pytest.approx(math.sqrt(2.0**2 + 3.0**2))
    h = intervals.half_width([2.0, 3.0], [D, D])
    assert (n.estimate.ci_low, n.estimate.ci_high) == (150.0 - h, 150.0 + h)
    assert total.estimate.value == 6_000_000.0
    assert total.estimate.mechanism is L
    h2 = intervals.half_width([2000.0, 3000.0], [L, L])
    assert total.estimate.ci_high - total.estimate.value == pytest.approx(h2)
    assert fed.epsilon == Epsilon(Fraction(1, 2))
    assert fed.dataset == "citizens"


def test_means_are_the_ratio_of_combined_parts_not_the_mean_of_means() -> None:
    fed = combine("q1", {n: _release(n, r) for n, r in (("node-a", A), ("node-b", B), ("node-c", C))}, {})
    south = {r.group: r for r in fed.rows}[("south",)]
    mean = south.cells[2]
    expected = (900.0 + 20_000.0 + 30.0) / (10.0 + 1000.0 + 3.0)
    mean_of_means = (90.0 + 20.0 + 10.0) / 3
    assert mean.estimate.value == pytest.approx(expected)
    assert mean.estimate.value != pytest.approx(mean_of_means)
    assert mean.estimate.mechanism is Mechanism.RATIO
    assert mean.estimate.noise_scale == 0.0
    assert mean.sum is not None and mean.count is not None
    assert mean.sum.value == pytest.approx(20_930.0)
    assert mean.count.value == pytest.approx(1013.0)
    # interval from the corners of the 97.5% intervals of the combined parts
    hs = intervals.half_width([200.0, 300.0, 500.0], [L, L, L], alpha=0.025)
    hc = intervals.half_width([2.0, 3.0, 5.0], [D, D, D], alpha=0.025)
    corners = [s / c for s in (20_930.0 - hs, 20_930.0 + hs) for c in (1013.0 - hc, 1013.0 + hc)]
    assert mean.estimate.ci_low == pytest.approx(min(corners))
    assert mean.estimate.ci_high == pytest.approx(max(corners))
    assert mean.estimate.ci_low <= mean.estimate.value <= mean.estimate.ci_high


def test_count_floor_in_ratio_interval() -> None:
    small = {"north": (1.0, 10.0, 40.0, 1.0), "south": (1.0, 10.0, 40.0, 1.0)}
    fed = combine("q1", {"node-a": _release("node-a", small)}, {})
    mean = fed.rows[0].cells[2].estimate
    assert math.isfinite(mean.ci_low) and math.isfinite(mean.ci_high)
    assert mean.value == pytest.approx(40.0)


def test_a_group_missing_at_one_node_takes_the_others() -> None:
    only_north = {"north": A["north"]}
    fed = combine("q1", {"node-a": _release("node-a", only_north), "node-b": _release("node-b", B)}, {})
    rows = {r.group: r for r in fed.rows}
    assert [r.group for r in fed.rows] == [("north",), ("south",)]
    assert rows[("south",)].cells[0].estimate.value == 1000.0
    assert rows[("south",)].cells[0].estimate.noise_scale == pytest.approx(3.0)


def test_mismatched_columns_name_the_nodes() -> None:
    other = (*COLUMNS[:3], ReleaseColumn("mean_age", AggregateFunction.AVG, "age_years"))
    releases = {"node-a": _release("node-a", A), "node-b": _release("node-b", B, columns=other)}
    with pytest.raises(InternalError) as info:
        combine("q1", releases, {})
    assert "node-b" in info.value.message and "node-a" in info.value.message


def test_different_epsilon_is_an_internal_error() -> None:
    releases = {
        "node-a": _release("node-a", A),
        "node-b": _release("node-b", B, epsilon=Epsilon(Fraction(1))),
    }
    with pytest.raises(InternalError, match="epsilon"):
        combine("q1", releases, {})


def test_no_release_is_unavailable_naming_every_missing_node() -> None:
    missing = {"district-b": "deadline exceeded", "district-a": "unreachable"}
    with pytest.raises(Unavailable) as info:
        combine("q1", {}, missing)
    for node, reason in missing.items():
        assert node in info.value.message and reason in info.value.message


def test_partial_when_nodes_are_missing() -> None:
    fed = combine("q1", {"node-a": _release("node-a", A)}, {"node-b": "deadline exceeded"})
    assert fed.partial
    assert fed.missing == {"node-b": "deadline exceeded"}
    assert fed.contributing_nodes == ("node-a",)
    # one node: the combined interval is that node's exact single-term interval
    n = {r.group: r for r in fed.rows}[("north",)].cells[0].estimate
    assert n.ci_high - n.value == intervals.half_width([2.0], [D])
    assert n.noise_scale == 2.0


def test_combined_mean_and_interval_are_clamped_to_public_bounds() -> None:
    """Property: with the column's public bounds the combined mean and both interval ends lie in
    [lower, upper] (post-processing; the true clamped mean is inside them), and without bounds
    the unclamped ratio is reported."""
    # a tiny group: noisy age sum far above what 2 people aged <= 100 can hold, so the ratio overshoots
    tiny = {"north": (2.0, 10.0, 900.0, 2.0), "south": (2.0, 10.0, -300.0, 2.0)}
    free = combine("q1", {"node-a": _release("node-a", tiny)}, {})
    clamped = combine("q1", {"node-a": _release("node-a", tiny)}, {}, {"age": (0.0, 100.0)})
    for row_free, row in zip(free.rows, clamped.rows, strict=True):
        raw, est = row_free.cells[2].estimate, row.cells[2].estimate
        assert raw.value < 0 or raw.value > 100  # the test only bites if the raw ratio leaves the bounds
        assert 0.0 <= est.ci_low <= est.value <= est.ci_high <= 100.0
        assert est.value == min(max(raw.value, 0.0), 100.0)
        # counts and sums are never clamped: they carry the noise that makes them private
        assert row.cells[0].estimate == row_free.cells[0].estimate
        assert row.cells[1].estimate == row_free.cells[1].estimate
