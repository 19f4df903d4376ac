"""Helpers for the audits of secure aggregation (test_secure_noise.py): the combined release drawn
through the real node path, the exact law of a sum of discrete Gaussian shares, and a
Gaussian-DP lower bound from threshold tests with its power.

**The release.** Node ``i`` of ``n`` holds an exact value ``x_i``, adds its own discrete Gaussian
share with :func:`accord.node.dp_gaussian.add_share` (one OpenDP call per node, so one long
vector gives many independent releases), masks the noisy vector with
:func:`accord.policies.secagg.mask` under fresh X25519 keys, and the coordinator sums the masked
vectors with :func:`accord.policies.secagg.sum_masked`. :func:`combined_release` does exactly that
for ``count`` releases at once: each entry of the result is ``sum_i x_i`` plus the sum of ``n``
independent shares. No noise comes from anywhere but OpenDP.

**The statistic.** A mechanism is ``mu``-GDP (Dong, Roth and Su 2019) when every test between
neighbouring inputs has type II error ``beta >= Phi(Phi^{-1}(1 - alpha) - mu)``, that is
``mu >= Phi^{-1}(1 - alpha) - Phi^{-1}(beta)``. For the threshold tests "reject D when the release
is ``>= T``" with ``X0`` the release on D (exact 0) and ``X1`` on D' (exact 1),
``alpha(T) = P(X0 >= T)`` and ``beta(T) = P(X1 < T)``; the right-hand side decreases in both, so
plugging in one-sided Clopper-Pearson *upper* bounds gives a lower bound on ``mu``. Every bound is
taken at level ``ALPHA / (2 * len(THRESHOLDS))`` (two per threshold), so by the union bound all
of them hold at once with probability ``>= 1 - ALPHA`` and then ``mu_lb <= max_T mu(T)``, where
``mu(T) = Phi^{-1}(1 - alpha(T)) - Phi^{-1}(beta(T))`` is the mechanism's true value.

The thresholds are fixed before sampling: ``T = 1 + 2k`` for ``k = -6..6`` (odd integers from -11
to 13, symmetric about the midpoint 1/2 of the two exact answers, within about two standard
deviations of the combined noise at the audited budget). For a Gaussian mechanism ``mu(T)`` is
the same at every ``T`` and the middle thresholds estimate it with the smallest standard errors;
far-tail thresholds would only add Bonferroni cost. One ordering (D rejected for large releases)
is enough: the noise is symmetric, so the other ordering has the same trade-off.

A sum of discrete Gaussians lives on a lattice and is not exactly a Gaussian: its ``mu(T)`` is
computed exactly from :mod:`accord.query.gaussian_sum` (:func:`true_mu`), and for the audited
budget it exceeds ``sqrt(2 rho)`` by about 0.1% (0.15365 against 0.15350).

**Epsilon.** A ``mu``-GDP mechanism is ``(epsilon, delta)``-DP exactly when ``delta >=
Phi(-epsilon/mu + mu/2) - e^epsilon Phi(-epsilon/mu - mu/2)`` (:func:`gdp_delta`), so
:func:`gdp_epsilon` turns ``mu_lb`` into the smallest epsilon at ``delta`` that a Gaussian
mechanism with that ``mu`` has: an epsilon lower bound for the Gaussian family.

**Power.** :func:`catch_power` gives an exact lower bound on ``P(mu_lb > target)`` under a known law
(the exact pmf of the sum, :mod:`accord.query.gaussian_sum`): for a threshold and a split of the
gap ``mu(T) - target`` between the two sides, ``mu_lb > target`` holds whenever both counts are
at most the largest counts whose Clopper-Pearson upper bounds stay below the split points, and
the two sides are independent binomials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray
from scipy import optimize, stats

from accord.node import dp_gaussian
from accord.policies import secagg
from accord.query import gaussian_sum
from tests.statistical.audit import clopper_pearson

ALPHA = 1e-3
ACCEPT = 1e-6
"""Where a correct implementation must pass, it fails with probability at most this per check (the
fast tests run on every commit: with ALPHA there, one of them would fail about 1% of the time).
Where a broken variant must be caught, the level is ALPHA, and the power stated is at ALPHA."""
"""Significance of every test in test_secure_noise.py (family-wise for the GDP lower bound)."""

THRESHOLDS: tuple[int, ...] = tuple(1 + 2 * k for k in range(-6, 7))
"""Threshold tests ``release >= T`` (D has exact answer 0, D' has 1)."""

NAMES = ("node-a", "node-b", "node-c")
"""The participants of a three-node secure aggregation (already in name order)."""

QUERY_ID = "q-secure-noise"
PAYLOAD = b"\x07" * 32


# ---- the release -----------------------------------------------------------------------------------


def key_shares(
    names: Sequence[str] = NAMES,
) -> tuple[dict[str, X25519PrivateKey], list[secagg.KeyShare], bytes]:
    """Fresh X25519 keys for every participant, their (unsigned) key shares and the transcript."""
    keys = {name: secagg.new_key() for name in names}
    shares = [
        secagg.KeyShare(name, QUERY_ID, PAYLOAD, tuple(names), secagg.public_bytes(keys[name]), b"")
        for name in names
    ]
    return keys, shares, secagg.transcript(shares)


def combined_release(exact: Sequence[int], sigma: float, count: int) -> NDArray[np.int64]:
    """``count`` independent releases of a secure-aggregated COUNT where node ``i`` holds
    ``exact[i]``: each node adds its OpenDP share of scale ``sigma`` and masks, the masked vectors
    are summed (see the module docstring)."""
    names = NAMES[: len(exact)]
    keys, shares, script = key_shares(names)
    masked = []
    for name, value in zip(names, exact, strict=True):
        noisy = dp_gaussian.add_share([value] * count, sigma)
        masked.append(secagg.mask(noisy, keys[name], name, shares, QUERY_ID, script))
    return np.asarray(secagg.sum_masked(masked), dtype=np.int64)


# ---- the exact law -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Law:
    """The pmf of ``S``, the sum of ``n`` independent ``N_Z(0, sigma^2)``, on ``-reach..reach``
    (the mass beyond is below ``1e-15``)."""

    sigma: float
    n: int
    ks: NDArray[np.int64]
    pmf: NDArray[np.float64]

    @classmethod
    def of(cls, sigma: float, n: int) -> Law:
        reach = math.ceil(sigma * math.sqrt(n) * 9) + 1
        ks = np.arange(-reach, reach + 1, dtype=np.int64)
        pmf = np.array([gaussian_sum.sum_pmf(sigma, n, int(k)) for k in ks], dtype=np.float64)
        return cls(sigma, n, ks, pmf)

    def sf(self, t: int) -> float:
        """``P(S >= t)``."""
        return float(math.fsum(self.pmf[self.ks >= t]))

    def cdf(self, t: int) -> float:
        """``P(S <= t)``."""
        return float(math.fsum(self.pmf[self.ks <= t]))


def true_mu(law: Law, thresholds: Sequence[int] = THRESHOLDS, shift: int = 1) -> NDArray[np.float64]:
    """``mu(T)`` for every threshold, with ``X0 = S`` and ``X1 = shift + S'``."""
    alpha = np.array([law.sf(t) for t in thresholds])
    beta = np.array([law.cdf(t - 1 - shift) for t in thresholds])
    return np.asarray(stats.norm.isf(alpha) - stats.norm.ppf(beta), dtype=np.float64)


# ---- the statistic -------------------------------------------------------------------------------------


def bound_level(thresholds: Sequence[int] = THRESHOLDS, alpha: float = ALPHA) -> float:
    """The level of each one-sided Clopper-Pearson bound (Bonferroni over two per threshold)."""
    return alpha / (2 * len(thresholds))


def threshold_counts(
    x0: NDArray[np.int64], x1: NDArray[np.int64], thresholds: Sequence[int] = THRESHOLDS
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``#(X0 >= T)`` and ``#(X1 < T)`` for every threshold."""
    t = np.asarray(thresholds, dtype=np.int64)
    k_alpha = (x0[:, None] >= t[None, :]).sum(axis=0).astype(np.int64)
    k_beta = (x1[:, None] < t[None, :]).sum(axis=0).astype(np.int64)
    return k_alpha, k_beta


@dataclass(frozen=True)
class GdpBound:
    """The best lower bound on ``mu`` over the thresholds, and where it was found."""

    mu_lb: float
    threshold: int
    n_per_side: int
    thresholds: int
    alpha_upper: float
    beta_upper: float

    def __str__(self) -> str:
        return (
            f"mu >= {self.mu_lb:.5f} (T = {self.threshold}: alpha <= {self.alpha_upper:.5f}, "
            f"beta <= {self.beta_upper:.5f}; {self.n_per_side} releases/side, {self.thresholds} thresholds)"
        )


def gdp_lower_bound(
    k_alpha: NDArray[np.int64],
    k_beta: NDArray[np.int64],
    n: int,
    thresholds: Sequence[int] = THRESHOLDS,
    alpha: float = ALPHA,
) -> GdpBound:
    """``max_T Phi^{-1}(1 - alpha_upper) - Phi^{-1}(beta_upper)`` (see the module docstring)."""
    level = bound_level(thresholds, alpha)
    _, a_hi = clopper_pearson(k_alpha, n, level)
    _, b_hi = clopper_pearson(k_beta, n, level)
    mus = stats.norm.isf(a_hi) - stats.norm.ppf(b_hi)
    i = int(np.argmax(mus))
    return GdpBound(float(mus[i]), thresholds[i], n, len(thresholds), float(a_hi[i]), float(b_hi[i]))


def audit(
    exact0: Sequence[int],
    exact1: Sequence[int],
    sigma: float,
    n: int,
    thresholds: Sequence[int] = THRESHOLDS,
    chunk: int = 200_000,
) -> GdpBound:
    """Draw ``n`` releases per side (node ``i`` holding ``exact0[i]``, resp. ``exact1[i]``; shares
    of scale ``sigma``), in chunks, and bound ``mu``."""
    k_alpha = np.zeros(len(thresholds), dtype=np.int64)
    k_beta = np.zeros_like(k_alpha)
    done = 0
    while done < n:
        size = min(chunk, n - done)
        x0 = combined_release(exact0, sigma, size)
        x1 = combined_release(exact1, sigma, size)
        a, b = threshold_counts(x0, x1, thresholds)
        k_alpha += a
        k_beta += b
        done += size
    return gdp_lower_bound(k_alpha, k_beta, n, thresholds)


# ---- Gaussian DP -> (epsilon, delta) ----------------------------------------------------------------


def gdp_delta(epsilon: float, mu: float) -> float:
    """The ``delta`` a ``mu``-GDP mechanism needs at ``epsilon`` (Dong, Roth and Su, Cor. 2.13)."""
    first = float(stats.norm.cdf(-epsilon / mu + mu / 2))
    return first - math.exp(epsilon + float(stats.norm.logcdf(-epsilon / mu - mu / 2)))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest ``epsilon`` with ``gdp_delta(epsilon, mu) <= delta`` (0 if ``mu <= 0``)."""
    if mu <= 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(hi, mu) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-12))


def gdp_mu_for_epsilon(epsilon: float, delta: float) -> float:
    """The ``mu`` whose GDP curve passes through ``(epsilon, delta)``: ``mu_lb`` above it means an
    epsilon lower bound above ``epsilon``."""
    return float(optimize.brentq(lambda m: gdp_epsilon(m, delta) - epsilon, 1e-3, 10.0, xtol=1e-12))


# ---- power ---------------------------------------------------------------------------------------------


def _largest_count_below(n: int, level: float, cap: float) -> int:
    """The largest ``k`` whose one-sided Clopper-Pearson upper bound at ``level`` is ``< cap`` (-1 if
    none). The bound ``hi(k)`` solves ``P(Binomial(n, hi) <= k) = level`` and that probability
    decreases in ``hi``, so ``hi(k) < cap`` exactly when ``P(Binomial(n, cap) <= k) < level``."""
    return int(stats.binom.ppf(level, n, cap)) - 1


def catch_power(
    law: Law,
    n: int,
    target: float,
    thresholds: Sequence[int] = THRESHOLDS,
    shift: int = 1,
    alpha: float = ALPHA,
) -> float:
    """An exact lower bound on ``P(mu_lb > target)`` with ``n`` releases per side whose noise has
    law ``law`` and exact answers 0 and ``shift`` (see the module docstring)."""
    level = bound_level(thresholds, alpha)
    best = 0.0
    for t in thresholds:
        a_true, b_true = law.sf(t), law.cdf(t - 1 - shift)
        za, zb = float(stats.norm.isf(a_true)), float(stats.norm.ppf(b_true))
        gap = za - zb - target
        if gap <= 0:
            continue
        for s in np.linspace(0.05, 0.95, 19):
            # alpha_upper < a_cap and beta_upper < b_cap imply mu_lb > za - s gap - zb - (1 - s) gap
            a_cap = float(stats.norm.sf(za - s * gap))
            b_cap = float(stats.norm.cdf(zb + (1 - s) * gap))
            ka = _largest_count_below(n, level, a_cap)
            kb = _largest_count_below(n, level, b_cap)
            if ka >= 0 and kb >= 0:
                best = max(best, float(stats.binom.cdf(ka, n, a_true) * stats.binom.cdf(kb, n, b_true)))
    return best


def chi2_power(truth: NDArray[np.float64], null: NDArray[np.float64], n: int, level: float) -> float:
    """Power of Pearson's chi-square goodness-of-fit test of ``n`` draws against the cell
    probabilities ``null`` at ``level``, when the draws really follow ``truth`` (the usual
    noncentral chi-square approximation, noncentrality ``n sum (truth - null)^2 / null``)."""
    df = len(null) - 1
    noncentrality = n * float(np.sum((truth - null) ** 2 / null))
    return float(stats.ncx2.sf(stats.chi2.isf(level, df), df, noncentrality))
