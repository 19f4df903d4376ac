"""Unit tests for node.dp (sensitivity, budget split, calibration) and node.release."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InternalError
from accord.node import dp
from accord.node.plan import MeasureKind, Measurement, distinct_measurements, group_keys
from accord.node.release import build_release, mean_estimate
from accord.query.epsilon import Epsilon
from accord.query.model import Aggregate, AggregateFunction, GroupColumn, Literal, Query
from accord.query.release import Estimate, Mechanism, ReleaseColumn
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema

COUNT_STAR = Measurement(MeasureKind.COUNT, None)


def make_schema(
    k: int = 2, lower: int = -5, upper: int = 3, flo: float = 0.1, fhi: float = 0.2
) -> DatasetSchema:
    return DatasetSchema(
        name="people",
        columns=(
            ColumnSpec("pid", ColumnType.STRING),
            ColumnSpec("g", ColumnType.STRING, categories=("a", "b", "c")),
            ColumnSpec("x", ColumnType.INTEGER, lower, upper),
            ColumnSpec("y", ColumnType.FLOAT, flo, fhi),
        ),
        privacy_unit="pid",
        max_rows_per_person=k,
    )


def agg(fn: AggregateFunction, col: str | None, alias: str) -> Aggregate:
    return Aggregate(fn, col, alias)


# ---- sensitivity -----------------------------------------------------------------------------


def test_count_sensitivity_is_k() -> None:
    schema = make_schema(k=3)
    assert dp.sensitivity(COUNT_STAR, schema) == 3
    assert dp.sensitivity(Measurement(MeasureKind.COUNT, "x"), schema) == 3
    assert dp.is_integer_valued(COUNT_STAR, schema)


def test_integer_sum_sensitivity() -> None:
    schema = make_schema(k=3, lower=-5, upper=3)
    s = dp.sensitivity(Measurement(MeasureKind.SUM, "x"), schema)
    assert s == 15 and isinstance(s, int)
    assert dp.is_integer_valued(Measurement(MeasureKind.SUM, "x"), schema)
    schema = make_schema(k=2, lower=0, upper=7)
    assert dp.sensitivity(Measurement(MeasureKind.SUM, "x"), schema) == 14


def test_float_sum_sensitivity_never_rounds_down() -> None:
    schema = make_schema(k=3, flo=-0.1, fhi=0.1)
    s = dp.sensitivity(Measurement(MeasureKind.SUM, "y"), schema)
    assert isinstance(s, float)
    assert Fraction(s) >= 3 * Fraction(0.1)
    assert s == pytest.approx(0.3)
    assert not dp.is_integer_valued(Measurement(MeasureKind.SUM, "y"), schema)


def test_sum_without_bounds_is_internal_error() -> None:
    columns = (ColumnSpec("pid", ColumnType.STRING), ColumnSpec("z", ColumnType.INTEGER))
    schema = DatasetSchema("d", columns, "pid", 1)
    with pytest.raises(InternalError):
        dp.sensitivity(Measurement(MeasureKind.SUM, "z"), schema)


# A tiny reference implementation of the engine's bounding and aggregation.
Row = tuple[int, int, int | None]  # (person, group, value)


def reference_vectors(rows: list[Row], k: int, lower: int, upper: int, groups: int) -> dict[str, list[int]]:
    kept: list[Row] = []
    per_person: dict[int, int] = {}
    for r in rows:  # keep each person's first k rows
        if per_person.get(r[0], 0) < k:
            per_person[r[0]] = per_person.get(r[0], 0) + 1
            kept.append(r)
    count_star = [0] * groups
    count_col = [0] * groups
    sums = [0] * groups
    for _, g, v in kept:
        count_star[g] += 1
        if v is not None:
            count_col[g] += 1
            sums[g] += min(max(v, lower), upper)
    return {"count_star": count_star, "count_col": count_col, "sum": sums}


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 2), st.one_of(st.none(), st.integers(-50, 50))),
        max_size=30,
    ),
    k=st.integers(1, 4),
    bounds=st.tuples(st.integers(-20, 20), st.integers(-20, 20)).map(sorted),
)
def test_sensitivity_bounds_real_l1_change(rows: list[Row], k: int, bounds: list[int]) -> None:
    lower, upper = bounds
    schema = make_schema(k=k, lower=lower, upper=upper)
    sens = {
        "count_star": dp.sensitivity(COUNT_STAR, schema),
        "count_col": dp.sensitivity(Measurement(MeasureKind.COUNT, "x"), schema),
        "sum": dp.sensitivity(Measurement(MeasureKind.SUM, "x"), schema),
    }
    full = reference_vectors(rows, k, lower, upper, 3)
    for person in {r[0] for r in rows}:
        without = reference_vectors([r for r in rows if r[0] != person], k, lower, upper, 3)
        for name, vec in full.items():
            l1 = sum(abs(a - b) for a, b in zip(vec, without[name], strict=True))
            assert l1 <= sens[name], (name, person)


# ---- budget ----------------------------------------------------------------------------------


QUERIES = [
    Query("people", (agg(AggregateFunction.COUNT, None, "n"),)),
    Query(
        "people",
        (
            GroupColumn("g", "g"),
            agg(AggregateFunction.AVG, "x", "mx"),
            agg(AggregateFunction.COUNT, "x", "nx"),
            agg(AggregateFunction.SUM, "y", "sy"),
        ),
        group_by=("g",),
    ),
    Query(
        "people",
        (
            agg(AggregateFunction.AVG, "x", "a"),
            agg(AggregateFunction.AVG, "y", "b"),
            agg(AggregateFunction.COUNT, None, "c"),
        ),
    ),
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("epsilon", [Fraction(1), Fraction(1, 3), Fraction("0.1"), Fraction(7, 11)])
def test_epsilon_split_composes_exactly(query: Query, epsilon: Fraction) -> None:
    per = dp.epsilon_split(query, epsilon)
    n = len(distinct_measurements(query))
    assert isinstance(per, Fraction)
    assert per * n == epsilon
    assert sum([per] * n, Fraction(0)) == epsilon


def test_shared_measurement_charged_once() -> None:
    # AVG(x) = SUM(x) + COUNT(x); COUNT(x) again is shared; SUM(y) is the third.
    assert dp.epsilon_split(QUERIES[1], Fraction(3)) == 1


# ---- calibration -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    sens_int=st.integers(1, 10**6),
    sens_float=st.floats(1e-6, 1e9, allow_nan=False),
    num=st.integers(1, 1000),
    den=st.integers(1, 1000),
)
def test_calibrated_scale_meets_epsilon(sens_int: int, sens_float: float, num: int, den: int) -> None:
    eps = Fraction(num, den)
    for sens, integer in ((sens_int, True), (sens_float, False)):
        scale = dp.calibrate(sens, eps, integer)
        assert scale >= float(Fraction(sens) / eps) * (1 - 1e-12)
        spent = Fraction(dp._laplace(integer, scale).map(int(sens) if integer else float(sens)))
        assert spent <= eps


def test_zero_sensitivity_adds_no_noise() -> None:
    assert dp.calibrate(0, Fraction(1), True) == 0.0
    assert dp.add_noise([3, 4], 0.0, True) == [3, 4]
    assert dp.half_width(Mechanism.DISCRETE_LAPLACE, 0.0) == 0.0


def test_mechanism_is_cached_per_scale() -> None:
    assert dp._laplace(True, 2.5) is dp._laplace(True, 2.5)
    assert dp._laplace(False, 2.5) is not dp._laplace(True, 2.5)


@pytest.mark.parametrize(
    "values", [[2**63], [-(2**63) - 5], [1.5], [None]], ids=["overflow", "underflow", "fraction", "none"]
)
def test_integer_values_are_checked(values: list[object]) -> None:
    with pytest.raises(InternalError):
        dp.add_noise(values, 1.0, True)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_float_values_are_checked(bad: object) -> None:
    with pytest.raises(InternalError):
        dp.add_noise([1.0, bad], 1.0, False)  # type: ignore[list-item]


def test_integer_noise_keeps_integers_and_float_exact_int_accepted() -> None:
    out = dp.add_noise([5, 7.0], 1.0, True)
    assert all(type(v) is int for v in out)


def test_release_measurement_intervals() -> None:
    schema = make_schema(k=2)
    ests = dp.release_measurement(COUNT_STAR, schema, [10, 20, 30], Fraction(1, 2))
    assert len(ests) == 3
    for e in ests:
        assert e.mechanism is Mechanism.DISCRETE_LAPLACE
        assert e.noise_scale == pytest.approx(4.0)
        a = dp.half_width(Mechanism.DISCRETE_LAPLACE, e.noise_scale)
        assert e.ci_low == pytest.approx(e.value - a) and e.ci_high == pytest.approx(e.value + a)
    (f,) = dp.release_measurement(Measurement(MeasureKind.SUM, "y"), schema, [1.25], Fraction(1))
    assert f.mechanism is Mechanism.LAPLACE
    assert f.noise_scale >= 0.4
    assert f.ci_high - f.value == pytest.approx(f.noise_scale * math.log(20))


def test_half_width_rejects_ratio() -> None:
    with pytest.raises(InternalError):
        dp.half_width(Mechanism.RATIO, 1.0)


# ---- ratio post-processing -------------------------------------------------------------------


def est(value: float, scale: float, mech: Mechanism = Mechanism.DISCRETE_LAPLACE) -> Estimate:
    a = dp.half_width(mech, scale)
    return Estimate(value, scale, value - a, value + a, mech)


def test_ratio_plain() -> None:
    r = mean_estimate(est(500.0, 1.0), est(10.0, 0.1), (0.0, 100.0))
    assert r.value == pytest.approx(50.0)
    assert r.mechanism is Mechanism.RATIO and r.noise_scale == 0.0
    assert r.ci_low <= r.value <= r.ci_high
    # Parts use alpha = 0.025 each.
    s_a = dp.half_width(Mechanism.DISCRETE_LAPLACE, 1.0, 0.025)
    c_a = dp.half_width(Mechanism.DISCRETE_LAPLACE, 0.1, 0.025)
    assert r.ci_low == pytest.approx((500 - s_a) / (10 + c_a))
    assert r.ci_high == pytest.approx((500 + s_a) / max(10 - c_a, 1))


@pytest.mark.parametrize("count", [0.0, -3.0, 0.5])
def test_ratio_count_below_one_is_treated_as_one(count: float) -> None:
    r = mean_estimate(est(4.0, 1.0), est(count, 1.0), (0.0, 100.0))
    assert r.value == pytest.approx(4.0)
    assert 0.0 <= r.ci_low <= r.value <= r.ci_high <= 100.0


def test_ratio_is_clamped_to_bounds() -> None:
    high = mean_estimate(est(5000.0, 1.0), est(2.0, 1.0), (0.0, 100.0))
    assert high.value == 100.0 and high.ci_high == 100.0
    low = mean_estimate(est(-40.0, 1.0), est(2.0, 1.0), (0.0, 100.0))
    assert low.value == 0.0 and low.ci_low == 0.0
    assert low.ci_low <= low.value <= low.ci_high


def test_ratio_negative_sum_corner_ordering() -> None:
    r = mean_estimate(est(-30.0, 2.0, Mechanism.LAPLACE), est(3.0, 2.0), (-100.0, 100.0))
    assert r.value == pytest.approx(-10.0)
    assert -100.0 <= r.ci_low < r.value < r.ci_high <= 100.0


# ---- build_release ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeExact:
    groups: tuple[tuple[Literal, ...], ...]
    values: Mapping[Measurement, tuple[int | float, ...]]


def test_build_release_shape_and_reuse() -> None:
    schema = make_schema(k=1, lower=0, upper=10)
    query = Query(
        "people",
        (
            agg(AggregateFunction.COUNT, "x", "nx"),
            GroupColumn("g", "grp"),
            agg(AggregateFunction.AVG, "x", "mean_x"),
            agg(AggregateFunction.SUM, "y", "sy"),
        ),
        group_by=("g",),
    )
    groups = group_keys(query, schema)
    exact = FakeExact(
        groups,
        {
            Measurement(MeasureKind.COUNT, "x"): (10, 0, 5),
            Measurement(MeasureKind.SUM, "x"): (50, 0, 20),
            Measurement(MeasureKind.SUM, "y"): (1.0, 0.0, 0.5),
        },
    )
    rel = build_release(query, schema, exact, Epsilon(Fraction(3, 2)), "q1", "node-a", 0.25)
    assert rel.query_id == "q1" and rel.node == "node-a" and rel.dataset == "people"
    assert rel.epsilon == Epsilon(Fraction(3, 2)) and rel.execution_seconds == 0.25
    assert rel.columns == (
        ReleaseColumn("nx", AggregateFunction.COUNT, "x"),
        ReleaseColumn("grp", None, "g"),
        ReleaseColumn("mean_x", AggregateFunction.AVG, "x"),
        ReleaseColumn("sy", AggregateFunction.SUM, "y"),
    )
    assert [r.group for r in rel.rows] == [("a",), ("b",), ("c",)]
    for row in rel.rows:
        count_cell, avg_cell, sum_cell = row.cells
        # COUNT(x) is noised once and shared with AVG(x).
        assert avg_cell.count is count_cell.estimate or avg_cell.count == count_cell.estimate
        assert avg_cell.sum is not None and avg_cell.estimate.mechanism is Mechanism.RATIO
        assert 0.0 <= avg_cell.estimate.value <= 10.0
        assert sum_cell.estimate.mechanism is Mechanism.LAPLACE
        assert count_cell.estimate.mechanism is Mechanism.DISCRETE_LAPLACE
        # epsilon 3/2 over three measurements: 1/2 each; count sensitivity 1 -> scale 2.
        assert count_cell.estimate.noise_scale == pytest.approx(2.0)


def test_build_release_without_group_by() -> None:
    schema = make_schema()
    query = Query("people", (agg(AggregateFunction.COUNT, None, "n"),))
    rel = build_release(
        query, schema, FakeExact(((),), {COUNT_STAR: (7,)}), Epsilon(Fraction(1)), "q", "n", 0.0
    )
    assert len(rel.rows) == 1 and rel.rows[0].group == () and len(rel.rows[0].cells) == 1


@pytest.mark.parametrize("values", [{}, {COUNT_STAR: (1, 2)}], ids=["missing", "misaligned"])
def test_build_release_rejects_bad_engine_output(values: Mapping[Measurement, tuple[int, ...]]) -> None:
    query = Query("people", (agg(AggregateFunction.COUNT, None, "n"),))
    with pytest.raises(InternalError):
        build_release(query, make_schema(), FakeExact(((),), values), Epsilon(Fraction(1)), "q", "n", 0.0)
