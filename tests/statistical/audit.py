"""Empirical epsilon lower bounds from samples of a mechanism on two neighbouring datasets.

A mechanism M is epsilon-DP when, for neighbouring datasets D and D' and *every* event S,
``P[M(D) in S] <= exp(epsilon) * P[M(D') in S]`` (and the same with D and D' swapped). Draw
``n`` outputs on each side, count how many land in S, and bound the two probabilities with
Clopper-Pearson intervals: with ``p_lo <= P[M(D) in S]`` and ``q_hi >= P[M(D') in S]`` holding,
``ln(p_lo / q_hi)`` is a lower bound on the epsilon the mechanism really delivers.

The events are fixed *before* sampling, in units of the exact change between the two datasets:
each released coordinate that differs between D and D' is normalised to
``z = (output - exact_D) / (exact_D' - exact_D)``, so under D it is centred on 0 and under D' on 1.
For each threshold ``t`` of :data:`THRESHOLDS` there are two events,
``{min_j z_j >= t}`` (every changed coordinate moved towards D') and ``{max_j z_j <= t}`` (every
one moved towards D). For a single coordinate these are the classic tail events, which are
optimal for (discrete) Laplace noise: in the tail the likelihood ratio is exactly
``exp(change / scale)``. For several coordinates with independent noise the product events
``{all z_j >= t}`` collect the privacy loss of every coordinate at once.

Every one-sided Clopper-Pearson bound is taken at level ``alpha / (4 * events)`` (four bounds per
event: lower and upper on each side, because both orderings D/D' and D'/D are tried), so by the
union bound all of them hold at once with probability at least ``1 - alpha``, and then the
reported lower bound is at most the true epsilon. A correct mechanism therefore fails
``lower_bound <= claimed epsilon`` with probability at most ``alpha``, whatever the samples
look like; the noise comes from OpenDP's cryptographic sampler and cannot be seeded, so this is
the only guard against flaky failures, and it is a proof, not a hope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

ALPHA = 1e-7
"""Family-wise probability that a correct mechanism's lower bound exceeds its epsilon."""

THRESHOLDS: NDArray[np.float64] = np.round(np.arange(-2.0, 3.0001, 0.25), 2)
"""Event thresholds in units of the exact D -> D' change (0 is D's exact value, 1 is D''s)."""

Sampler = Callable[[int], NDArray[np.float64]]
"""``sampler(n)`` returns ``n`` releases as an ``(n, width)`` array."""


def clopper_pearson(
    k: NDArray[np.int64], n: int, a: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One-sided Clopper-Pearson bounds at level ``a`` each: ``P(p < lo) <= a`` and ``P(p > hi) <= a``."""
    k = np.asarray(k, dtype=np.int64)
    lo = stats.beta.ppf(a, np.maximum(k, 1), n - k + 1)
    hi = stats.beta.ppf(1 - a, k + 1, np.maximum(n - k, 1))
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


@dataclass(frozen=True)
class AuditResult:
    """The best lower bound found and the event that gave it."""

    eps_lower: float
    event: str
    n_per_side: int
    events: int

    def __str__(self) -> str:
        size = f"{self.n_per_side} samples/side, {self.events} events"
        return f"eps >= {self.eps_lower:.4f} ({self.event}; {size})"


def normalise(
    out: NDArray[np.float64], exact_d: Sequence[float], exact_d2: Sequence[float]
) -> NDArray[np.float64]:
    """The coordinates that differ between D and D', in units of their exact change."""
    a = np.asarray(exact_d, dtype=np.float64)
    b = np.asarray(exact_d2, dtype=np.float64)
    changed = a != b
    if not changed.any():
        raise ValueError("D and D' have the same exact answer: nothing to audit")
    return np.asarray((out[:, changed] - a[changed]) / (b[changed] - a[changed]), dtype=np.float64)


def event_counts(z: NDArray[np.float64]) -> NDArray[np.int64]:
    """For each threshold, how many rows of ``z`` fall in ``{min z >= t}`` and in ``{max z <= t}``."""
    lo, hi = z.min(axis=1), z.max(axis=1)
    up = (lo[:, None] >= THRESHOLDS[None, :]).sum(axis=0)
    down = (hi[:, None] <= THRESHOLDS[None, :]).sum(axis=0)
    return np.concatenate([up, down]).astype(np.int64)


def event_names() -> list[str]:
    return [f"min z >= {t:g}" for t in THRESHOLDS] + [f"max z <= {t:g}" for t in THRESHOLDS]


def epsilon_lower_bound(
    k_d: NDArray[np.int64], k_d2: NDArray[np.int64], n: int, alpha: float = ALPHA
) -> AuditResult:
    """The largest ``ln(p_lo / q_hi)`` over every event and both orderings (see the module docstring)."""
    events = len(k_d)
    a = alpha / (4 * events)
    d_lo, d_hi = clopper_pearson(k_d, n, a)
    d2_lo, d2_hi = clopper_pearson(k_d2, n, a)
    names = event_names()
    best, where = -math.inf, "none"
    for i in range(events):
        for p_lo, q_hi, order in ((d_lo[i], d2_hi[i], "D/D'"), (d2_lo[i], d_hi[i], "D'/D")):
            if p_lo > 0:
                eps = math.log(p_lo / q_hi)
                if eps > best:
                    best, where = eps, f"{names[i]}, {order}"
    return AuditResult(best, where, n, events)


def audit(
    sample_d: Sampler,
    sample_d2: Sampler,
    exact_d: Sequence[float],
    exact_d2: Sequence[float],
    n: int,
    chunk: int = 100_000,
    alpha: float = ALPHA,
) -> AuditResult:
    """Draw ``n`` releases on each side (in chunks, so a million fit in memory), count the events,
    and return the epsilon lower bound."""
    k_d = np.zeros(2 * len(THRESHOLDS), dtype=np.int64)
    k_d2 = np.zeros_like(k_d)
    done = 0
    while done < n:
        size = min(chunk, n - done)
        k_d += event_counts(normalise(sample_d(size), exact_d, exact_d2))
        k_d2 += event_counts(normalise(sample_d2(size), exact_d, exact_d2))
        done += size
    return epsilon_lower_bound(k_d, k_d2, n, alpha)
