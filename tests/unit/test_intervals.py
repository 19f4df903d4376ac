"""Intervals of sums of Laplace noises: exact single terms, closed forms, and Monte Carlo coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accord.coordinator import intervals
from accord.query.release import Mechanism

L = Mechanism.LAPLACE
D = Mechanism.DISCRETE_LAPLACE


def test_single_continuous_term_is_exact() -> None:
    for b in (0.1, 1.0, 3.7, 250.0):
        assert intervals.half_width([b], [L]) == pytest.approx(b * math.log(20.0), rel=1e-12)
        assert intervals.half_width([b], [L], alpha=0.025) == pytest.approx(b * math.log(40.0), rel=1e-12)


def _discrete_tail(b: float, k: int) -> float:
    """P(|X| >= k) for k >= 1, by summing the pmf directly (no closed form)."""
    t = math.exp(-1.0 / b)
    norm = (1.0 - t) / (1.0 + t)
    return 2.0 * norm * math.fsum(t**j for j in range(k, k + 20000))


@pytest.mark.parametrize("b", [0.3, 0.5, 1.0, 2.0, 3.7, 10.0, 42.0])
def test_single_discrete_term_is_the_smallest_integer(b: float) -> None:
    h = intervals.half_width([b], [D])
    assert h == int(h)
    assert _discrete_tail(b, int(h) + 1) <= 0.05
    if h > 0:
        assert _discrete_tail(b, int(h)) > 0.05


def test_zero_scales_add_nothing() -> None:
    assert intervals.half_width([], []) == 0.0
    assert intervals.half_width([0.0, 0.0], [D, L]) == 0.0
    assert intervals.half_width([0.0, 2.0], [L, L]) == pytest.approx(2.0 * math.log(20.0))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        intervals.half_width([1.0], [L, L])
    with pytest.raises(ValueError):
        intervals.half_width([-1.0], [L])
    with pytest.raises(ValueError):
        intervals.half_width([float("nan")], [L])
    with pytest.raises(ValueError):
        intervals.half_width([1.0], [Mechanism.RATIO])
    with pytest.raises(ValueError):
        intervals.half_width([1.0], [L], alpha=0.0)


def test_two_equal_continuous_terms_match_closed_form() -> None:
    # Sum of two Laplace(1): P(S > x) = e^-x (2 + x) / 4 for x >= 0.
    h = intervals.half_width([1.0, 1.0], [L, L])
    assert 2 * math.exp(-h) * (2 + h) / 4 == pytest.approx(0.05, rel=1e-5)
    assert intervals.laplace_sum_tail([1.0, 1.0], 2.0) == pytest.approx(math.exp(-2.0) * 4 / 4, rel=1e-7)


def test_separated_scales_match_partial_fractions() -> None:
    # Sum of Laplace(1) and Laplace(e): P(S > x) = (e^-x - e² e^(-x/e)) / (2 (1 - e²)).
    for eps in (0.01, 0.3):
        h = intervals.half_width([1.0, eps], [L, L])
        tail = (math.exp(-h) - eps**2 * math.exp(-h / eps)) / (2 * (1 - eps**2))
        assert 2 * tail == pytest.approx(0.05, rel=1e-5)


def test_series_and_closed_form_agree_at_the_switch() -> None:
    # ratio² just above and just below 1/2 use different evaluations; the answers must be continuous
    a = intervals.half_width([1.0, math.sqrt(0.5) * 1.0001], [L, L])
    b = intervals.half_width([1.0, math.sqrt(0.5) * 0.9999], [L, L])
    assert a == pytest.approx(b, rel=1e-4)


def test_all_discrete_sum_is_the_smallest_integer_by_convolution() -> None:
    for scales in ([1.0, 1.0], [2.0, 0.7, 3.0], [1.5] * 8, [4.0, 1.0, 0.5, 2.5]):
        pmf = np.array([1.0])
        for b in scales:
            t = math.exp(-1.0 / b)
            k = np.arange(-400, 401)
            pmf = np.convolve(pmf, (1 - t) / (1 + t) * t ** np.abs(k))
        centre = (len(pmf) - 1) // 2
        h = intervals.half_width(scales, [D] * len(scales))
        assert h == int(h)

        def exceed(x: int, pmf: np.ndarray = pmf, centre: int = centre) -> float:
            inside = pmf[centre - x : centre + x + 1].sum()
            return float(1.0 - inside)

        assert exceed(int(h)) <= 0.05
        assert exceed(int(h) - 1) > 0.05


def test_half_width_grows_with_scales_and_terms() -> None:
    assert intervals.half_width([1.0, 2.0], [L, L]) < intervals.half_width([1.0, 2.5], [L, L])
    assert intervals.half_width([1.0] * 3, [L] * 3) < intervals.half_width([1.0] * 4, [L] * 4)
    # a sum of n terms needs less than n single-term widths, more than the largest single one
    h = intervals.half_width([1.0] * 8, [L] * 8)
    assert math.log(20.0) < h < 8 * math.log(20.0)


# ---- Monte Carlo coverage ----------------------------------------------------------------------

DRAWS = 400_000
# coverage must be >= 95% (minus Monte Carlo error: SE ~ 0.00034) and not much above it
LOW, HIGH = 0.95 - 0.0017, 0.965

CASES = [
    [1.0, 1.0],
    [1.0, 3.0],
    [1.0, 1.0, 1.0],
    [0.5, 2.0, 7.0],
    [2.0] * 8,
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
    [10.0, 0.2],
    [5.0] * 16,
]


def _discrete(rng: np.random.Generator, b: float, n: int) -> np.ndarray:
    # discrete Laplace(b) = difference of two geometrics with success probability 1 - e^(-1/b)
    p = 1.0 - math.exp(-1.0 / b)
    return rng.geometric(p, n) - rng.geometric(p, n)


@pytest.mark.parametrize("scales", CASES, ids=lambda s: "-".join(f"{b:g}" for b in s))
def test_continuous_coverage(scales: list[float]) -> None:
    rng = np.random.default_rng(12345)
    total = sum(rng.laplace(0.0, b, DRAWS) for b in scales)
    h = intervals.half_width(scales, [L] * len(scales))
    coverage = float(np.mean(np.abs(total) <= h))
    assert LOW <= coverage <= 0.95 + 0.0017  # exact: close to 95% from both sides


@pytest.mark.parametrize("scales", CASES, ids=lambda s: "-".join(f"{b:g}" for b in s))
def test_discrete_coverage(scales: list[float]) -> None:
    rng = np.random.default_rng(54321)
    total = sum(_discrete(rng, b, DRAWS) for b in scales)
    h = intervals.half_width(scales, [D] * len(scales))
    coverage = float(np.mean(np.abs(total) <= h))
    assert coverage >= LOW
    # tight: within the band, or (small scales: the noise is an integer) one less would undercover
    assert coverage <= HIGH or float(np.mean(np.abs(total) <= h - 1)) < 0.95


@pytest.mark.parametrize("scales", [[3.0, 4.0], [20.0, 25.0, 30.0]])
def test_mixed_coverage_is_conservative(scales: list[float]) -> None:
    rng = np.random.default_rng(7)
    total = rng.laplace(0.0, scales[0], DRAWS) + sum(_discrete(rng, b, DRAWS) for b in scales[1:])
    h = intervals.half_width(scales, [L] + [D] * (len(scales) - 1))
    coverage = float(np.mean(np.abs(total) <= h))
    assert LOW <= coverage <= 0.975


def test_large_discrete_scales_use_the_bound_and_stay_tight() -> None:
    rng = np.random.default_rng(99)
    scales = [400.0, 300.0, 500.0]
    total = sum(_discrete(rng, b, DRAWS) for b in scales)
    h = intervals.half_width(scales, [D] * 3)
    coverage = float(np.mean(np.abs(total) <= h))
    assert LOW <= coverage <= HIGH
