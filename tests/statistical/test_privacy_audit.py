"""Empirical privacy audits of every mechanism a node releases, on worst-case neighbours.

For each scenario of :mod:`tests.statistical.neighbours` (COUNT 0 vs 1; a filtered COUNT with a
person holding more rows than allowed; a GROUP BY COUNT with a person in two groups and with a
person moving between groups; an INTEGER SUM with a person beyond the negative bound; a FLOAT SUM
with a person at the upper bound; an AVG with a person at the upper bound), D and D' are real
files answered exactly by the node's engine, and releases are drawn from the node's release path
(:func:`node.release.build_release`). :func:`tests.statistical.audit.audit` turns the releases
into a lower confidence bound on the epsilon actually delivered (threshold events,
Clopper-Pearson, Bonferroni over events and orderings).

* **within claim**: the lower bound never exceeds what the node claims (``epsilon``, or
  ``2 * epsilon`` for a substitution). A correct node fails this with probability < 1e-7 per
  audit (the family-wise level of the bounds, :data:`tests.statistical.audit.ALPHA`); the noise is
  OpenDP's CSPRNG and cannot be seeded, and needs no seed for that guarantee.
* **teeth**: the same audit, on the same path, with the node asked for ``2 * epsilon`` (half the
  noise) while the audit still claims ``epsilon``, must report a lower bound above the claim.
  With these epsilons (0.5 to 1 per measurement) the under-noised lower bound sits near
  ``2 * claim - 0.35`` even at 10,000 samples per side, about 20 standard deviations above the
  claim, so this fails by chance with negligible probability.

The mean is audited on what a node releases for it: the noisy (sum, count) pair. The released
mean is a function of that pair and public bounds (:func:`accord.query.release.ratio_estimate`), so
every event about the mean is an event about the pair and the pair's bound covers it.

Fast runs (``make test``) draw 100,000 OpenDP noise values per side for the claim: 100,000
releases of a single number, 50,000 of a pair (two groups, or a mean's sum and count); the FLOAT
SUM gets 20,000 releases, as OpenDP's exact continuous sampler is several times slower. The teeth
use 10,000 releases per side: fewer samples can only make a violation harder to see, so catching
it there shows the larger claim test would too (measured: lower bounds 1.62-1.74 for a claim of 1,
standard deviation 0.03). Thorough runs (``make test-slow``): 1,000,000 releases per side for both.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from accord.node import dp
from tests.statistical.audit import THRESHOLDS, AuditResult, audit, epsilon_lower_bound
from tests.statistical.neighbours import SCENARIO_IDS, SCENARIOS, Neighbours, Prepared, prepare

N_FAST_DRAWS = 100_000  # noise values per side in a fast claim audit
N_FAST_FLOAT = 20_000
N_TEETH = 10_000
N_SLOW = 1_000_000


@pytest.fixture(scope="module", params=SCENARIOS, ids=SCENARIO_IDS)
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    scenario: Neighbours = request.param
    return prepare(scenario, Path(tmp_path_factory.mktemp("neighbours")))


def run_audit(p: Prepared, epsilon: Fraction, n: int) -> AuditResult:
    """Draw ``n`` releases per side of the scenario's query at ``epsilon`` and bound the epsilon."""
    return audit(
        p.sampler(p.exact_d, epsilon),
        p.sampler(p.exact_d2, epsilon),
        p.exact_vector(p.exact_d),
        p.exact_vector(p.exact_d2),
        n,
    )


def fast_n(p: Prepared) -> int:
    """Releases per side in a fast claim audit: N_FAST_DRAWS noise values (see the module docstring)."""
    if any(not dp.is_integer_valued(m, p.schema) for m in p.measurements()):
        return N_FAST_FLOAT
    return N_FAST_DRAWS // (len(p.exact_d.groups) * len(p.measurements()))


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
def test_lower_bound_is_sound_and_tight_on_exact_probabilities(epsilon: float) -> None:
    """Property: the audit statistic itself is right, independent of any sampling: fed the expected
    event counts of a discrete Laplace mechanism with a known epsilon (shift 1, scale 1/epsilon,
    1,000,000 draws per side), it returns a bound below that epsilon but within 0.05 of it."""
    law = stats.dlaplace(epsilon)  # pmf proportional to exp(-epsilon |k|)
    n = 1_000_000
    ceil_t, floor_t = np.ceil(THRESHOLDS), np.floor(THRESHOLDS)
    # z = X on D and 1 + X on D'; one coordinate, so min z = max z = z.
    up_d, up_d2 = law.sf(ceil_t - 1), law.sf(ceil_t - 2)
    down_d, down_d2 = law.cdf(floor_t), law.cdf(floor_t - 1)
    k_d = np.round(n * np.concatenate([up_d, down_d])).astype(np.int64)
    k_d2 = np.round(n * np.concatenate([up_d2, down_d2])).astype(np.int64)
    result = epsilon_lower_bound(k_d, k_d2, n)
    assert epsilon - 0.05 < result.eps_lower <= epsilon, result


def test_neighbours_are_worst_case(prepared: Prepared) -> None:
    """Property: each audited pair is a worst case for the node's calibration: the exact L1 change
    of every measurement's group vector, computed by the engine, equals ``distance`` times the
    sensitivity the node calibrates its noise to (so the audits test the noise against the largest
    change one person can cause, not a gentler one)."""
    s = prepared.scenario
    for m in prepared.measurements():
        assert prepared.l1_change(m) == s.distance * dp.sensitivity(m, prepared.schema), m


def test_delivered_epsilon_within_claim(prepared: Prepared) -> None:
    """Property: the node's release on worst-case neighbours delivers no more than the claimed
    epsilon: the 1 - 1e-7 lower confidence bound on the delivered epsilon is <= the claim."""
    s = prepared.scenario
    result = run_audit(prepared, s.epsilon, fast_n(prepared))
    print(f"{s.name}: claimed {s.claimed:g}, {result}")
    assert result.eps_lower <= s.claimed, result


def test_half_noise_is_caught(prepared: Prepared) -> None:
    """Property: the audit has teeth: the same node path with half the required noise (the node asked
    for twice the epsilon) yields a lower bound above the claimed epsilon."""
    s = prepared.scenario
    result = run_audit(prepared, 2 * s.epsilon, N_TEETH)
    print(f"{s.name}: half noise, claimed {s.claimed:g}, {result}")
    assert result.eps_lower > s.claimed, result


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("noise", ["full", "half"])
def test_delivered_epsilon_million_samples(prepared: Prepared, noise: str) -> None:
    """Property (thorough): with 1,000,000 releases per side the lower bound on the delivered
    epsilon stays <= the claim for the node's real noise (and sits within a few percent of it,
    showing the noise is not needlessly large), and exceeds the claim with half the noise."""
    s = prepared.scenario
    asked = s.epsilon if noise == "full" else 2 * s.epsilon
    result = run_audit(prepared, asked, N_SLOW)
    print(f"{s.name}: {noise} noise, claimed {s.claimed:g}, {result}")
    if noise == "full":
        assert result.eps_lower <= s.claimed, result
        assert result.eps_lower > 0.9 * s.claimed, result
    else:
        assert result.eps_lower > s.claimed, result
