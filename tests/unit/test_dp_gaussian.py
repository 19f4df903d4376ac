"""Distributed discrete Gaussian noise (:mod:`accord.node.dp_gaussian`, :mod:`accord.query.zcdp`):
the budget conversion, the share calibration against the written-down bound, the sensitivities and
fixed-point encoding, and the share built from an engine's exact values."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from accord.errors import ConfigError, InternalError, InvalidQuery
from accord.node import dp_gaussian
from accord.node.backend import ExactAnswer
from accord.node.plan import SUPPORT, MeasureKind, Measurement, distinct_measurements, group_keys
from accord.node.secure_release import build_share, check_range
from accord.query.epsilon import Epsilon
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema, SecureAggregation
from accord.query.sql import compile_query
from accord.query.zcdp import rho_for, to_epsilon

SECURE = SecureAggregation(3, "1e-9", ("a", "b", "c"))
SCHEMA = DatasetSchema(
    "d",
    (
        ColumnSpec("pid", ColumnType.STRING),
        ColumnSpec("age", ColumnType.INTEGER, 0, 100),
        ColumnSpec("income", ColumnType.FLOAT, -50.5, 1000.25),
        ColumnSpec("g", ColumnType.STRING, categories=("a", "b", "c")),
    ),
    "pid",
    2,
    max_rows=10**6,
    secure=SECURE,
)


def _bs_epsilon(rho: float, delta: float) -> float:
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


@pytest.mark.parametrize(
    ("epsilon", "delta"), [("0.1", "1e-9"), ("1", "1e-9"), ("1/3", "1e-6"), ("8", "1e-12")]
)
def test_rho_is_the_largest_budget_whose_conversion_fits_epsilon(epsilon: str, delta: str) -> None:
    """Property: rho converts (Bun-Steinke) to at most epsilon at delta, and is within 1e-8
    (relative) of the largest that does: no budget is wasted, none overspent."""
    eps, d = Fraction(epsilon), Fraction(delta)
    rho = rho_for(eps, d)
    assert to_epsilon(rho, d) <= eps
    assert _bs_epsilon(float(rho), float(d)) <= float(eps)
    assert _bs_epsilon(float(rho) * (1 + 1e-8), float(d)) > float(eps) * (1 - 1e-15)


def test_an_epsilon_too_small_for_the_conversion_is_refused_as_the_analysts() -> None:
    """Property: an epsilon so small that no zCDP budget survives the rounding is refused as an
    invalid query saying what to change, never an internal error at the node."""
    assert rho_for(Fraction(1, 10**6), Fraction(1, 10**9)) > 0
    with pytest.raises(InvalidQuery, match="too small for secure aggregation"):
        rho_for(Fraction(1, 10**20), Fraction(1, 10**9))


def test_secure_settings_need_the_holders() -> None:
    """Property: a secure-aggregation setting names at least two holders, each once, in order, and
    no more honest nodes than holders."""
    for holders in ((), ("a",), ("b", "a"), ("a", "a")):
        with pytest.raises(ConfigError, match="holders must list"):
            SecureAggregation(2, "1e-9", holders)
    with pytest.raises(ConfigError, match="more than the dataset's 2 holders"):
        SecureAggregation(3, "1e-9", ("a", "b"))


def _tau(sigma: float, t: int) -> float:
    return 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, t))


@pytest.mark.parametrize("sens", [1, 3, 100, 25_000])
@pytest.mark.parametrize("honest", [1, 2, 3, 8, 16])
def test_the_share_scale_meets_the_written_bound_tightly(sens: int, honest: int) -> None:
    """Property: the sum of ``honest`` shares at the calibrated scale satisfies the bound of
    docs/secure-aggregation.md (Kairouz-Liu-Steinke) within rho_m, and a scale 0.1% smaller does
    not: the noise is as small as the guarantee allows."""
    rho_m = rho_for(Fraction(1), Fraction(1, 10**9)) / 3
    dims = 7
    sigma = dp_gaussian.share_scale(sens, rho_m, honest, dims)

    def spent(s: float) -> float:
        return sens**2 / (2 * honest * s**2) + _tau(s, honest) * dims / 4

    assert spent(sigma) <= float(rho_m)
    assert spent(sigma * 0.999) > float(rho_m)
    central = dp_gaussian.share_scale(sens, rho_m, 1, dims)
    assert sigma * math.sqrt(honest) == pytest.approx(central, rel=1e-6)  # the sum is the central noise


def test_small_scales_pay_for_the_sum_not_being_a_discrete_gaussian() -> None:
    """Property: where the shares are narrow the tau term of the bound is not negligible, and the
    calibration widens the shares to pay for it (a large rho over many groups)."""
    rho_m = Fraction(51, 100)
    plain = math.sqrt(1 / (2 * 0.51 * 2))  # about 0.7: above the 1/2 floor
    sigma = dp_gaussian.share_scale(1, rho_m, 2, 50)
    assert plain > 0.5 and _tau(plain, 2) * 50 / 4 > 0.1
    assert sigma > plain * 1.01
    assert 1 / (2 * 2 * sigma**2) + _tau(sigma, 2) * 50 / 4 <= 0.51


def test_no_share_is_narrower_than_the_bound_allows() -> None:
    """Property: the bound on sums of discrete Gaussians needs sigma >= 1/2; however large the
    budget, no share is narrower."""
    assert dp_gaussian.share_scale(1, Fraction(10**6), 8, 1) == pytest.approx(0.5, rel=1e-8)
    assert dp_gaussian.share_scale(1, Fraction(10**6), 8, 1) >= 0.5


def test_a_share_of_no_noise_and_bad_arguments() -> None:
    assert dp_gaussian.share_scale(0, Fraction(1, 10), 3, 1) == 0.0
    for args in (
        (1, Fraction(0), 3, 1),
        (1, Fraction(1), 0, 1),
        (1, Fraction(1), 3, 0),
        (-1, Fraction(1), 3, 1),
    ):
        with pytest.raises(InternalError):
            dp_gaussian.share_scale(*args)


def test_sensitivities_and_fixed_point_bits_come_from_public_metadata() -> None:
    """Property: counts have L2 sensitivity k (rows per person); integer sums k*B; float sums are
    encoded in units of 2**-f with f the most bits (up to 20) keeping k*B*2**f under 2**44, and
    sensitivity ceil(k*B*2**f) + k (rounding of each touched group)."""
    count = Measurement(MeasureKind.COUNT, None)
    age = Measurement(MeasureKind.SUM, "age")
    income = Measurement(MeasureKind.SUM, "income")
    assert (dp_gaussian.scale_bits(count, SCHEMA), dp_gaussian.l2_sensitivity(count, SCHEMA, 0)) == (0, 2)
    assert (dp_gaussian.scale_bits(age, SCHEMA), dp_gaussian.l2_sensitivity(age, SCHEMA, 0)) == (0, 200)
    bits = dp_gaussian.scale_bits(income, SCHEMA)
    assert bits == 20
    assert dp_gaussian.l2_sensitivity(income, SCHEMA, bits) == math.ceil(2 * 1000.25 * 2**20) + 2
    wide = DatasetSchema(
        "w", (ColumnSpec("pid", ColumnType.STRING), ColumnSpec("x", ColumnType.FLOAT, 0, 1e12)), "pid", 1
    )
    wide_bits = dp_gaussian.scale_bits(Measurement(MeasureKind.SUM, "x"), wide)
    assert 1e12 * 2**wide_bits <= 2**44 < 1e12 * 2 ** (wide_bits + 1)
    assert dp_gaussian.encode([1.5, -0.25, 3], 2) == [6, -1, 12]
    assert dp_gaussian.encode([4, 5.0], 0) == [4, 5]
    with pytest.raises(InternalError):
        dp_gaussian.encode([1.5], 0)
    with pytest.raises(InternalError):
        dp_gaussian.encode([math.nan], 3)


def _exact(sql: str, support: bool = False) -> tuple[object, ExactAnswer]:
    query = compile_query(sql, {"d": SCHEMA})
    groups = group_keys(query, SCHEMA)
    values = {
        m: tuple(10 * (i + 1) for i in range(len(groups))) for m in distinct_measurements(query, support)
    }
    return query, ExactAnswer(groups, values)


def test_a_share_holds_every_measure_noised_with_its_own_scale() -> None:
    """Property: the share has one noisy vector per distinct measurement (support included when the
    agreement suppresses small groups), each measure's scale the calibration's for rho / measures,
    the bounds of averaged columns, and noise that is really there (values moved)."""
    query, exact = _exact("SELECT g, COUNT(*) AS n, AVG(age) AS a FROM d GROUP BY g", support=True)
    share = build_share(query, SCHEMA, exact, Epsilon.parse("1"), "q", "county", ("a", "b", "c"), 5, "open")  # type: ignore[arg-type]
    measures = distinct_measurements(query, True)  # type: ignore[arg-type]
    assert len(share.measures) == len(measures) == 3  # COUNT(*) (also the support), SUM(age), COUNT(age)
    assert share.support == measures.index(SUPPORT)
    rho = rho_for(Fraction(1), Fraction(1, 10**9))
    assert Fraction(share.rho) == rho / 3 * 3
    for spec, m in zip(share.measures, measures, strict=True):
        bits = dp_gaussian.scale_bits(m, SCHEMA)
        sens = dp_gaussian.l2_sensitivity(m, SCHEMA, bits)
        assert spec.sigma == dp_gaussian.share_scale(sens, rho / 3, 3, 3)
    assert share.bounds == (("age", "0", "100"),)
    assert share.suppress_below == 10 and share.min_group_size == 5
    assert share.vector != tuple(v for m in measures for v in exact.values[m])


def test_a_sum_that_could_overflow_over_the_participants_is_refused_before_anything_runs() -> None:
    """Property: whether the sum of every participant's encoded value could leave 64 bits is judged
    from public metadata (max_rows, bounds, participants) and refused with what to change."""
    big = DatasetSchema(
        "d",
        (ColumnSpec("pid", ColumnType.STRING), ColumnSpec("x", ColumnType.INTEGER, 0, 2**40)),
        "pid",
        1,
        max_rows=2**21,
        secure=SECURE,
    )
    query = compile_query("SELECT SUM(x) AS s FROM d", {"d": big})
    check_range(query, big, Epsilon.parse("1"), 3, False)
    with pytest.raises(InvalidQuery, match="could exceed 64-bit integers"):
        check_range(query, big, Epsilon.parse("1"), 8, False)
