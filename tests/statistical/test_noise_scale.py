"""Statistical audit of node.dp: the noise OpenDP adds has the stated scale, and the stated
95% intervals cover the exact value about 95% of the time.

Noise is not seedable (it comes from OpenDP's cryptographic sampler), so every threshold is set
far enough out that a correct implementation fails a goodness-of-fit check with probability
< 1e-6 (its p-value is uniform, and the check needs p > 1e-6), while a scale 30% off is rejected
with overwhelming probability (p < 1e-8). The privacy audits proper (epsilon lower bounds on
worst-case neighbours) are in test_privacy_audit.py.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from accord.node import dp
from accord.node.plan import MeasureKind, Measurement
from accord.node.release import mean_estimate
from accord.query.release import Estimate, Mechanism
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from tests.statistical.neighbours import SCENARIO_IDS, SCENARIOS, Neighbours, prepare

N = 20_000
P_ACCEPT = 1e-6  # a correct scale fails a goodness-of-fit test with at most this probability
COVERAGE_TOL = 0.008  # ~5 standard errors of a proportion near 0.95 at N = 20,000


def discrete_gof_pvalue(samples: list[int], scale: float) -> float:
    """Chi-square test of integer samples against the discrete Laplace pmf ∝ exp(-|k|/scale)."""
    law = stats.dlaplace(1.0 / scale)
    # Cells k = -K..K with at least ~20 expected draws each, tails merged.
    k_max = int(law.ppf(1 - 20 / len(samples)))
    counts = Counter(max(-k_max - 1, min(k_max + 1, v)) for v in samples)
    ks = range(-k_max - 1, k_max + 2)
    observed = np.array([counts.get(k, 0) for k in ks], dtype=float)
    probs = np.array([law.pmf(k) for k in range(-k_max, k_max + 1)])
    tail = law.sf(k_max)  # P(X > k_max) = P(X < -k_max)
    expected = np.concatenate(([tail], probs, [tail])) * len(samples)
    expected *= observed.sum() / expected.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def continuous_gof_pvalue(samples: list[float], scale: float) -> float:
    return float(stats.kstest(samples, "laplace", args=(0.0, scale)).pvalue)


def mean_abs(samples: list[int] | list[float]) -> float:
    return float(np.mean(np.abs(np.asarray(samples, dtype=float))))


def discrete_mean_abs(scale: float) -> float:
    t = math.exp(-1.0 / scale)
    return 2 * t / ((1 + t) * (1 - t))


@pytest.mark.parametrize("scale", [0.7, 3.0, 25.0])
def test_discrete_laplace_matches_scale(scale: float) -> None:
    """Property: integer noise is discrete Laplace with exactly the requested scale (chi-square
    accepts it; 1.3x and 0.7x the scale are rejected), and E|noise| matches the scale."""
    samples = dp.add_noise([0] * N, scale, True)
    assert all(type(v) is int for v in samples[:100])
    assert discrete_gof_pvalue(samples, scale) > P_ACCEPT
    assert mean_abs(samples) == pytest.approx(discrete_mean_abs(scale), rel=0.05)
    for wrong in (scale * 1.3, scale * 0.7):
        assert discrete_gof_pvalue(samples, wrong) < 1e-8
        assert mean_abs(samples) != pytest.approx(discrete_mean_abs(wrong), rel=0.05)


@pytest.mark.parametrize("scale", [0.05, 4.0, 1000.0])
def test_continuous_laplace_matches_scale(scale: float) -> None:
    """Property: float noise is Laplace with exactly the requested scale (Kolmogorov-Smirnov accepts
    it; 1.3x and 0.7x the scale are rejected), and E|noise| = scale."""
    samples = dp.add_noise([0.0] * N, scale, False)
    assert continuous_gof_pvalue(samples, scale) > P_ACCEPT
    assert mean_abs(samples) == pytest.approx(scale, rel=0.05)  # E|X| = b for Laplace(b)
    for wrong in (scale * 1.3, scale * 0.7):
        assert continuous_gof_pvalue(samples, wrong) < 1e-8
        assert mean_abs(samples) != pytest.approx(wrong, rel=0.05)


SCHEMA = DatasetSchema(
    "d",
    (
        ColumnSpec("pid", ColumnType.STRING),
        ColumnSpec("x", ColumnType.INTEGER, 0, 100),
        ColumnSpec("y", ColumnType.FLOAT, 0.0, 10.0),
    ),
    "pid",
    2,
)


def coverage(true: float, estimates: tuple[Estimate, ...]) -> float:
    return sum(1 for e in estimates if e.ci_low <= true <= e.ci_high) / len(estimates)


def test_continuous_interval_covers_95_percent() -> None:
    """Property: the 95% interval stated for a continuous-Laplace release covers the exact value
    95% of the time (not less: it is valid; not much more: it is not needlessly wide)."""
    ests = dp.release_measurement(Measurement(MeasureKind.SUM, "y"), SCHEMA, [3.5] * N, Fraction(1, 3))
    assert ests[0].mechanism is Mechanism.LAPLACE
    assert coverage(3.5, ests) == pytest.approx(0.95, abs=COVERAGE_TOL)


def test_discrete_interval_covers_at_least_95_percent() -> None:
    """Property: the interval stated for a discrete-Laplace release covers the exact value with the
    probability the discrete law gives it (at least 95%)."""
    # Sensitivity 2 at epsilon 1/50: scale 100, large enough for the coverage to sit near 95%.
    ests = dp.release_measurement(Measurement(MeasureKind.COUNT, None), SCHEMA, [40] * N, Fraction(1, 50))
    scale = ests[0].noise_scale
    half = dp.half_width(Mechanism.DISCRETE_LAPLACE, scale)
    exact_coverage = 1 - 2 * stats.dlaplace(1.0 / scale).sf(math.floor(half))
    assert 0.95 <= exact_coverage < 0.955
    assert coverage(40, ests) == pytest.approx(exact_coverage, abs=COVERAGE_TOL)


def test_ratio_interval_covers_at_least_95_percent() -> None:
    """Property: the joint interval of a mean (noisy sum / noisy count) covers the exact mean at
    least 95% of the time."""
    # 30 people averaging 40: the joint interval is conservative, so coverage should be >= 95%.
    eps = Fraction(1, 2)
    sums = dp.release_measurement(Measurement(MeasureKind.SUM, "x"), SCHEMA, [1200] * N, eps)
    counts = dp.release_measurement(Measurement(MeasureKind.COUNT, "x"), SCHEMA, [30] * N, eps)
    ratios = tuple(mean_estimate(s, c, (0.0, 100.0)) for s, c in zip(sums, counts, strict=True))
    assert coverage(40.0, ratios) >= 0.95 - COVERAGE_TOL


@pytest.mark.slow
def test_continuous_laplace_large_sample() -> None:
    """Property (thorough): with 500,000 draws the continuous noise fits its scale and a scale only
    5% off is already rejected."""
    samples = dp.add_noise([0.0] * 500_000, 2.0, False)
    assert continuous_gof_pvalue(samples, 2.0) > P_ACCEPT
    assert continuous_gof_pvalue(samples, 2.1) < 1e-6  # 5% off is visible at this size


RELEASED = {
    i: s for i, s in zip(SCENARIO_IDS, SCENARIOS, strict=True) if i in ("filtered-count", "float-sum")
}


@pytest.mark.parametrize("scenario", list(RELEASED.values()), ids=list(RELEASED))
def test_released_noise_has_the_stated_scale(scenario: Neighbours, tmp_path: Path) -> None:
    """Property: a release is the engine's exact answer plus noise of exactly the scale the release
    states in ``noise_scale`` (the number the coordinator builds combined intervals from), and that
    scale is sensitivity / epsilon. Checked end to end: real files, the node's engine, the node's
    ``build_release``; the fit accepts the stated scale and rejects 1.3x and 0.7x it."""
    p = prepare(scenario, tmp_path)
    (m,) = p.measurements()
    exact = p.exact_vector(p.exact_d)[0]
    estimates = [row.cells[0].estimate for row in p.release(p.exact_d, scenario.epsilon, N).rows]
    scale = estimates[0].noise_scale
    assert all(e.noise_scale == scale for e in estimates)
    assert scale == pytest.approx(dp.sensitivity(m, p.schema) / scenario.epsilon, rel=1e-12)
    if dp.is_integer_valued(m, p.schema):
        assert all(e.mechanism is Mechanism.DISCRETE_LAPLACE for e in estimates)
        ints = [round(e.value - exact) for e in estimates]
        assert all(e.value - exact == k for e, k in zip(estimates, ints, strict=True))
        assert discrete_gof_pvalue(ints, scale) > P_ACCEPT
        for wrong in (scale * 1.3, scale * 0.7):
            assert discrete_gof_pvalue(ints, wrong) < 1e-8
    else:
        assert all(e.mechanism is Mechanism.LAPLACE for e in estimates)
        noise = [e.value - exact for e in estimates]
        assert continuous_gof_pvalue(noise, scale) > P_ACCEPT
        for wrong in (scale * 1.3, scale * 0.7):
            assert continuous_gof_pvalue(noise, wrong) < 1e-8
