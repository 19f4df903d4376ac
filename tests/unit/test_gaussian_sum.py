"""Sums of discrete Gaussian noises: the characteristic function, the lattice inversion and the
half-width, each checked against direct sums and explicit convolutions computed here."""

from __future__ import annotations

import math
import time
from statistics import NormalDist

import numpy as np
import pytest

from accord.query import gaussian_sum as gs

ALPHA = 0.05
Z_975 = NormalDist().inv_cdf(0.975)


# ---- independent references ------------------------------------------------------------------------


def _weights(sigma: float) -> tuple[np.ndarray, int]:
    """``exp(-k²/2 sigma²)`` for ``|k| <= K``, normalised (the mass left out is below e^-60)."""
    half = math.ceil(sigma * math.sqrt(2.0 * 60.0)) + 2
    w = np.array([math.exp(-k * k / (2.0 * sigma * sigma)) for k in range(-half, half + 1)])
    return w / math.fsum(w), half


def _sum_pmf(sigma: float, n: int) -> tuple[np.ndarray, int]:
    """The pmf of ``X_1 + ... + X_n`` by explicit convolution; index ``i`` is ``k = i - offset``."""
    one, half = _weights(sigma)
    pmf = one
    for _ in range(n - 1):
        pmf = np.convolve(pmf, one)
    return pmf, n * half


def _tail(pmf: np.ndarray, offset: int, h: int) -> float:
    """``P(|S| > h)``, summed over the two tails (no cancellation)."""
    lo = offset - h - 1  # index of k = -(h + 1)
    hi = offset + h + 1  # index of k = h + 1
    return math.fsum(pmf[: max(lo + 1, 0)]) + math.fsum(pmf[hi:])


def _direct_cf(u: float, sigma: float) -> float:
    half = math.ceil(sigma * math.sqrt(2.0 * 60.0)) + 2
    ks = range(-half, half + 1)
    w = [math.exp(-k * k / (2.0 * sigma * sigma)) for k in ks]
    return math.fsum(x * math.cos(u * k) for x, k in zip(w, ks, strict=True)) / math.fsum(w)


# ---- one term ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.999, 1.0, 2.5, 10.0, 1e4, 1e7])
def test_cf_at_zero_is_one(sigma: float) -> None:
    assert gs.discrete_gaussian_cf(0.0, sigma) == 1.0
    assert gs.discrete_gaussian_cf(2.0 * math.pi, sigma) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.0, 2.5, 10.0])
def test_cf_matches_the_direct_series(sigma: float) -> None:
    for u in (1e-6, 0.05, 0.3, 1.0, 2.0, 3.0, math.pi, -0.7, 4.0, 7.5, -12.0):
        assert gs.discrete_gaussian_cf(u, sigma) == pytest.approx(_direct_cf(u, sigma), abs=1e-14), u


def test_cf_is_continuous_where_the_two_forms_meet() -> None:
    for u in (0.1, 1.0, 2.0, math.pi):
        below = gs.discrete_gaussian_cf(u, 1.0 - 1e-12)  # direct series
        at = gs.discrete_gaussian_cf(u, 1.0)  # Poisson-summed
        assert below == pytest.approx(at, abs=1e-11)


def test_cf_of_a_wide_term_is_the_gaussian_one() -> None:
    # the aliasing terms are e^{-2π² sigma²} ~ e^-1974 here: φ(u) = exp(-sigma² u²/2)
    for u in (1e-7, 1e-6, 3e-6):
        assert gs.discrete_gaussian_cf(u, 1e6) == pytest.approx(math.exp(-0.5 * (1e6 * u) ** 2), rel=1e-13)


@pytest.mark.parametrize("sigma", [0.2, 0.5, 0.8, 1.3, 1.9, 1.999, 2.0, 3.0])
def test_variance_matches_the_direct_series(sigma: float) -> None:
    one, half = _weights(sigma)
    ks = np.arange(-half, half + 1, dtype=float)
    direct = math.fsum(one * ks * ks)
    assert gs.variance(sigma, 1) == pytest.approx(direct, rel=1e-12)
    assert gs.variance(sigma, 5) == pytest.approx(5 * direct, rel=1e-12)
    assert gs.variance(sigma, 1) <= sigma * sigma


# ---- the lattice -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 7.0])
def test_one_term_lattice_is_the_normalised_pmf_sum(sigma: float) -> None:
    one, half = _weights(sigma)
    for h in (0, 1, 2, 3, 5, 10, 20):
        direct = math.fsum(one[max(half - h, 0) : half + h + 1])
        assert gs.sum_cdf_abs(sigma, 1, h) == pytest.approx(direct, abs=1e-13), h
    for k in (0, 1, -2, 5, 9):
        assert gs.sum_pmf(sigma, 1, k) == pytest.approx(one[half + k] if abs(k) <= half else 0.0, abs=1e-14)


@pytest.mark.parametrize("sigma", [0.45, 0.9, 1.5, 4.0, 11.0])
@pytest.mark.parametrize("n", [2, 3])
def test_lattice_pmf_is_the_convolution(sigma: float, n: int) -> None:
    pmf, offset = _sum_pmf(sigma, n)
    reach = math.ceil(4.0 * sigma * math.sqrt(n)) + 3
    for k in range(-reach, reach + 1):
        assert gs.sum_pmf(sigma, n, k) == pytest.approx(pmf[offset + k], abs=1e-12), k
    for h in range(0, reach + 1, max(1, reach // 7)):
        assert 1.0 - gs.sum_cdf_abs(sigma, n, h) == pytest.approx(_tail(pmf, offset, h), abs=1e-12), h


def test_grids_of_either_parity_are_exact() -> None:
    # j = N/2 is its own mirror image on a grid of even size: it must be counted once
    sigma, n = 0.6, 2
    pmf, offset = _sum_pmf(sigma, n)
    sizes = set()
    for reach in (4, 5):
        grid = gs._Lattice.build(sigma, n, reach)
        assert grid is not None
        sizes.add(grid.size % 2)
        assert 2 * grid.js[-1] >= grid.size - 1  # nothing truncated: φ(π)^2 is not small here
        for k in range(-reach, reach + 1):
            assert grid.pmf(k) == pytest.approx(pmf[offset + k], abs=1e-14)
        for h in range(reach + 1):
            assert 1.0 - grid.cdf_abs(h) == pytest.approx(_tail(pmf, offset, h), abs=1e-14)
    assert sizes == {0, 1}


def test_lattice_is_consistent_with_itself() -> None:
    sigma, n = 2.5, 4
    assert math.fsum(gs.sum_pmf(sigma, n, k) for k in range(-60, 61)) == pytest.approx(1.0, abs=1e-13)
    for h in (1, 4, 9):
        step = gs.sum_cdf_abs(sigma, n, h) - gs.sum_cdf_abs(sigma, n, h - 1)
        assert step == pytest.approx(2.0 * gs.sum_pmf(sigma, n, h), abs=1e-14)
    assert gs.sum_cdf_abs(sigma, n, -1) == 0.0
    assert gs.sum_cdf_abs(sigma, n, 10**6) == 1.0
    assert gs.sum_pmf(sigma, n, 10**6) == 0.0
    assert gs.sum_pmf(sigma, n, 7) == gs.sum_pmf(sigma, n, -7)


# ---- half-width ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0, 20.0])
@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_half_width_is_the_smallest_integer(sigma: float, n: int) -> None:
    pmf, offset = _sum_pmf(sigma, n)
    for alpha in (ALPHA, 0.01):
        h = gs.half_width(sigma, n, alpha)
        assert isinstance(h, int)
        assert _tail(pmf, offset, h) <= alpha
        if h > 0:
            assert _tail(pmf, offset, h - 1) > alpha


def test_half_width_is_exact_for_a_wide_sum() -> None:
    sigma, n = 150.0, 4
    pmf, offset = _sum_pmf(sigma, n)
    h = gs.half_width(sigma, n)
    assert _tail(pmf, offset, h) <= ALPHA < _tail(pmf, offset, h - 1)


def test_tiny_noise_needs_no_width() -> None:
    assert gs.half_width(0.0, 5) == 0
    assert gs.half_width(0.1, 1) == 0  # P(X != 0) = 2e^-50 / Z
    assert gs.sum_cdf_abs(0.0, 3, 0) == 1.0
    assert gs.sum_pmf(0.0, 3, 0) == 1.0
    assert gs.sum_pmf(0.0, 3, 1) == 0.0
    assert gs.variance(0.0, 3) == 0.0
    assert gs.discrete_gaussian_cf(1.0, 0.0) == 1.0


def test_integer_like_arguments_are_accepted() -> None:
    # typed as int; anything with __index__ (numpy integers) works too
    assert gs.half_width(3, np.int64(4)) == gs.half_width(3.0, 4)  # type: ignore[arg-type]
    assert gs.sum_pmf(2.0, 3, np.int32(-1)) == gs.sum_pmf(2.0, 3, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("sigma", [1e3, 1e4, 1e5])
@pytest.mark.parametrize("n", [1, 4, 16])
def test_wide_sums_approach_the_normal_answer(sigma: float, n: int) -> None:
    # S is then the normal N(0, n sigma²) sampled on the integers; with the continuity correction
    # P(|S| <= h) ≈ P(|N| <= h + 1/2), so h ≈ z sigma sqrt(n) - 1/2
    h = gs.half_width(sigma, n)
    assert abs(h - (Z_975 * sigma * math.sqrt(n) - 0.5)) <= 2.0
    if sigma * math.sqrt(n) <= 4e4:
        assert abs(h - 1.96 * math.sqrt(n) * sigma) <= 3.0


def test_fallback_is_conservative() -> None:
    for sigma in (0.3, 0.7, 2.0, 5.0, 20.0, 1e3, 1e5):
        for n in (1, 2, 4, 8, 16):
            for alpha in (ALPHA, 0.01):
                exact = gs.half_width(sigma, n, alpha)
                bound = gs._subgaussian_half_width(sigma, n, alpha * (1.0 - 1e-6))
                assert bound >= exact
                if sigma >= 1e3:
                    assert bound <= 1.5 * exact  # ~1.39 at 5%: conservative, not absurd
    pmf, offset = _sum_pmf(5.0, 8)
    assert _tail(pmf, offset, gs._subgaussian_half_width(5.0, 8, ALPHA)) <= ALPHA


@pytest.mark.parametrize("sigma", [1e9, 1e12, 1e15])
def test_huge_scales_stay_exact(sigma: float) -> None:
    # the grid has ~20 terms whatever N is: no fallback for fixed-point sums of large values; the
    # 1e-6 safety margin in probability is ~4e-7 sigma sqrt(n) units of h here
    n = 16
    h = gs.half_width(sigma, n)
    normal = Z_975 * sigma * math.sqrt(n) - 0.5
    assert normal <= h <= normal * (1.0 + 1e-6)
    # S is the normal N(0, n sigma²) sampled on the integers, and the midpoint rule's error is
    # ~f'(h)/12 ~ 1e-2 / (n sigma²) here: P(|S| > h) = P(|N| > h + 1/2)
    tail = 1.0 - gs.sum_cdf_abs(sigma, n, h)
    normal_tail = 2.0 * NormalDist().cdf(-(h + 0.5) / (sigma * math.sqrt(n)))
    assert tail == pytest.approx(normal_tail, abs=1e-11)
    assert tail <= ALPHA * (1.0 - 1e-6)


def test_beyond_the_grid_the_fallback_is_used() -> None:
    sigma, n = 1e18, 16
    h = gs.half_width(sigma, n)
    assert h == gs._subgaussian_half_width(sigma, n, ALPHA * (1.0 - 1e-6))
    assert h >= Z_975 * sigma * math.sqrt(n)
    with pytest.raises(ValueError, match="lattice"):
        gs.sum_cdf_abs(sigma, n, 10**19)
    with pytest.raises(ValueError, match="lattice"):
        gs.sum_pmf(sigma, n, 0)


def test_half_width_is_fast_and_cached() -> None:
    gs._half_width.cache_clear()
    start = time.perf_counter()
    h = gs.half_width(1e4, 16)
    assert time.perf_counter() - start < 0.1
    assert abs(h - 1.96 * 4 * 1e4) <= 3
    hits = gs._half_width.cache_info().hits
    assert gs.half_width(1e4, 16) == h
    assert gs._half_width.cache_info().hits == hits + 1


# ---- input checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [-1.0, -1e-300, math.nan, math.inf, -math.inf])
def test_bad_sigma_is_refused(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        gs.half_width(sigma, 2)
    with pytest.raises(ValueError, match="sigma"):
        gs.sum_cdf_abs(sigma, 2, 3)
    with pytest.raises(ValueError, match="sigma"):
        gs.sum_pmf(sigma, 2, 3)
    with pytest.raises(ValueError, match="sigma"):
        gs.variance(sigma, 2)
    with pytest.raises(ValueError, match="sigma"):
        gs.discrete_gaussian_cf(0.5, sigma)


@pytest.mark.parametrize("n", [0, -3, 1.5, True])
def test_bad_n_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="n must be"):
        gs.half_width(1.0, n)
    with pytest.raises(ValueError, match="n must be"):
        gs.sum_pmf(1.0, n, 0)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_bad_alpha_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        gs.half_width(1.0, 2, alpha)


def test_other_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="h must be"):
        gs.sum_cdf_abs(1.0, 2, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        gs.sum_pmf(1.0, 2, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="u must be"):
        gs.discrete_gaussian_cf(math.inf, 1.0)
