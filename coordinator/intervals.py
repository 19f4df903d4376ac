"""Two-sided intervals for a sum of independent Laplace noises (pure Python, no numpy).

When several nodes each add their own noise to a count or sum, the combined estimate carries the
noise ``S = X_1 + ... + X_n`` where ``X_i`` is Laplace with scale ``b_i`` (density
``exp(-|x|/b) / 2b``) or discrete Laplace with parameter ``b_i`` (``P(x) ∝ exp(-|x|/b)`` on the
integers). :func:`half_width` returns ``h`` with ``P(|S| > h) <= alpha``.

One term (exact)
    Continuous: ``P(|X| > h) = exp(-h/b)``, so ``h = b ln(1/alpha)``.
    Discrete: with ``t = exp(-1/b)``, ``P(X = k) = (1-t)/(1+t) t^|k|`` and for ``k >= 1``
    ``P(|X| >= k) = 2 (1-t)/(1+t) Σ_{j>=k} t^j = 2 t^k / (1+t)``. The smallest integer ``h`` with
    ``P(|X| > h) = P(|X| >= h+1) <= alpha`` is ``h = ceil(ln(alpha (1+t) / 2) / ln t) - 1``
    (floored at 0).

Several continuous terms (Gil-Pelaez)
    ``S`` is symmetric with characteristic function ``φ(u) = Π 1 / (1 + b_i² u²)`` and
    ``P(S > x) = 1/2 - (1/π) ∫_0^∞ sin(u x) / u · φ(u) du``. The integral is evaluated with the
    midpoint (Davies) rule at ``u_k = (k + 1/2) Δ``::

        P(S > x) ≈ 1/2 - Σ_k φ(u_k) sin(u_k x) / (π (k + 1/2))

    which is exact for the distribution of ``S`` wrapped onto a period of ``2π/Δ``; its error is
    bounded by the probability that ``|S|`` exceeds ``2π/Δ - x``. ``Δ`` is chosen so that this is
    below ``e^-40`` (scales normalised by ``s = sqrt(Σ b_i²)``, ``x`` below a union-bound ceiling).
    The sum is cut once ``φ(u_k) / (k + 1/2)`` is negligible (the oscillating tail of the series
    is bounded by its first neglected term over ``|sin(Δx/2)|``). The density, for Newton steps,
    is ``f(x) = (Δ/π) Σ_k φ(u_k) cos(u_k x)``. ``x`` with ``2 P(S > x) = alpha`` is found by a
    Newton iteration safeguarded by bisection inside ``[0, s · ln(n/alpha) Σ b_i/s]`` (the union
    bound: ``P(|S| > Σ b_i ln(n/alpha)) <= Σ alpha/n``).

Several discrete terms, all discrete (exact lattice inversion)
    ``S`` is integer-valued with ``φ_d(u) = Π (1-t_i)² / (1 - 2 t_i cos u + t_i²)`` and
    ``P(|S| <= h) = (1/2π) ∫_{-π}^{π} φ_d(u) D_h(u) du`` with the Dirichlet kernel
    ``D_h(u) = sin((h + 1/2) u) / sin(u/2)``. The trapezoidal rule on ``N`` equally spaced
    points gives exactly ``Σ_{|k| <= h} Σ_l P(S = k + l N)`` (aliasing), so with
    ``N >= 4h + 40 max b_i + 64`` the error is below ``e^-40``. The smallest integer ``h`` is
    found by stepping from the continuous answer. When ``N`` would be too large (very large
    scales) the bound below is used instead: it is then tight to well under 1%.

Mixed or very large discrete terms (conservative bound)
    A discrete Laplace(b) is ``floor(b E_1) - floor(b E_2)`` with ``E_j`` standard exponentials
    (``P(floor(bE) >= k) = e^{-k/b} = t^k``: a geometric), while ``b E_1 - b E_2`` is a continuous
    Laplace(b). The two differ by less than 1, so ``|S_discrete| <= |S_continuous| + m`` for ``m``
    discrete terms, and ``h = h_continuous + m`` keeps ``P(|S| > h) <= alpha``.

Every result is cached by the (sorted) tuple of terms and ``alpha``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

from accord.query.release import ALPHA, Mechanism

_SAFETY = 1e-6  # solve for a tail slightly below alpha so numerical error never costs coverage
_MAX_LATTICE = 4096  # largest trapezoid grid for the exact discrete inversion
_MAX_TERMS = 20000  # hard cap on the Gil-Pelaez series length
_LARGE_DISCRETE = 1e6  # above this scale a discrete half-width is computed in closed form


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0) or math.isnan(alpha):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def single_discrete_half_width(scale: float, alpha: float = ALPHA) -> int:
    """Smallest integer ``h`` with ``P(|X| > h) <= alpha`` for one discrete Laplace(``scale``)."""
    _check_alpha(alpha)
    if scale <= 0.0:
        return 0
    t = math.exp(-1.0 / scale)
    if t == 0.0:
        return 0
    if scale > _LARGE_DISCRETE:
        # ln t is -1/scale exactly; math.log(t) loses it (t rounds towards 1, and to 1.0 itself
        # past about 1e16: a division by zero), and stepping k by one no longer changes t**k. So
        # k = ceil(scale ln(2 / (alpha (1 + t)))) directly, widened by a relative 1e-12 that
        # dwarfs the rounding: conservative by at most one.
        return max(0, math.ceil(scale * math.log(2.0 / (alpha * (1.0 + t))) * (1.0 + 1e-12)))
    k = math.ceil(math.log(alpha * (1.0 + t) / 2.0) / math.log(t))
    # guard the ceiling against rounding at exact integers: the tail formula decides
    while k > 1 and 2.0 * t ** (k - 1) / (1.0 + t) <= alpha:
        k -= 1
    while 2.0 * t**k / (1.0 + t) > alpha:
        k += 1
    return max(0, k - 1)


# ---- continuous sums: Gil-Pelaez ----------------------------------------------------------------


class _ContinuousSum:
    """Tail and density of ``Σ β_i L_i`` (``Σ β_i² = 1``) via the midpoint Gil-Pelaez series."""

    def __init__(self, betas: tuple[float, ...], x_max: float) -> None:
        self.delta = 2.0 * math.pi / (2.0 * x_max + 40.0 * max(betas) + 10.0)
        sq = [b * b for b in betas]
        self.u: list[float] = []
        self.w_tail: list[float] = []  # φ(u_k) / (π (k + 1/2))
        self.w_dens: list[float] = []  # φ(u_k) Δ / π
        for k in range(_MAX_TERMS):
            u = (k + 0.5) * self.delta
            u2 = u * u
            phi = 1.0
            for s in sq:
                phi /= 1.0 + s * u2
            self.u.append(u)
            self.w_tail.append(phi / (math.pi * (k + 0.5)))
            self.w_dens.append(phi * self.delta / math.pi)
            # the neglected oscillating tail is about (first neglected term) / (2 |sin(Δx/2)|);
            # for x >= 1 (normalised) that is below ~1e-9 once φ/(π(k+1/2)) < 1e-9 Δ
            if phi / (math.pi * (k + 0.5)) < 1e-9 * self.delta:
                break

    def tail(self, x: float) -> float:
        """``P(S > x)``."""
        acc = 0.0
        for u, w in zip(self.u, self.w_tail, strict=True):
            acc += w * math.sin(u * x)
        return 0.5 - acc

    def density(self, x: float) -> float:
        acc = 0.0
        for u, w in zip(self.u, self.w_dens, strict=True):
            acc += w * math.cos(u * x)
        return acc


class _SeparatedSum:
    """Closed form for well separated scales (partial fractions of ``φ`` in ``u²``).

    ``Π 1/(1 + b_i² u²) = Σ_i c_i / (1 + b_i² u²)`` with ``c_i = Π_{j≠i} b_i² / (b_i² - b_j²)``, so
    ``P(S > x) = (1/2) Σ_i c_i exp(-x/b_i)`` for ``x >= 0``. Used only when every adjacent ratio
    ``b_{i+1}² / b_i²`` is at most 1/2, so ``|c_i| <= 2^(n-1)`` and no precision is lost that
    matters; there the Gil-Pelaez series would converge slowly (``φ`` decays like ``u^-2``).
    """

    def __init__(self, betas: tuple[float, ...]) -> None:
        self.betas = betas
        self.coef: list[float] = []
        for i, bi in enumerate(betas):
            c = 1.0
            for j, bj in enumerate(betas):
                if j != i:
                    c *= bi * bi / (bi * bi - bj * bj)
            self.coef.append(c)

    def tail(self, x: float) -> float:
        return 0.5 * math.fsum(c * math.exp(-x / b) for c, b in zip(self.coef, self.betas, strict=True))

    def density(self, x: float) -> float:
        return 0.5 * math.fsum(c * math.exp(-x / b) / b for c, b in zip(self.coef, self.betas, strict=True))


def _separated(betas: tuple[float, ...]) -> bool:
    return all(b2 * b2 <= 0.5 * b1 * b1 for b1, b2 in itertools.pairwise(betas))


def _solve_continuous(betas: tuple[float, ...], alpha: float) -> float:
    """``y`` with ``2 P(Σ β_i L_i > y) = alpha`` for normalised scales (``Σ β_i² = 1``)."""
    target = alpha * (1.0 - _SAFETY) / 2.0
    lo = 0.0
    hi = math.log(len(betas) / alpha) * sum(betas)
    dist: _SeparatedSum | _ContinuousSum = (
        _SeparatedSum(betas) if _separated(betas) else _ContinuousSum(betas, hi)
    )
    # start between the single-term and the normal answer; both are in the bracket
    y = min(max(betas[0] * math.log(1.0 / alpha), math.sqrt(2.0) * 1.96), hi)
    for _ in range(100):
        p = dist.tail(y)
        if p > target:
            lo = y
        else:
            hi = y
        if hi - lo < 1e-9 * max(1.0, hi):
            break
        f = dist.density(y)
        step = (p - target) / f if f > 0.0 else 0.0
        nxt = y + step
        if not (lo < nxt < hi) or step == 0.0:
            nxt = (lo + hi) / 2.0
        if abs(nxt - y) < 1e-10 * max(1.0, y):
            # converged by Newton: make sure we return a point whose tail is <= target
            y = nxt
            if dist.tail(y) > target:
                y += 1e-8 * max(1.0, y)
            return y
        y = nxt
    return hi


@functools.lru_cache(maxsize=4096)
def _continuous_half_width(scales: tuple[float, ...], alpha: float) -> float:
    """Half-width for a sum of continuous Laplace noises; ``scales`` positive, sorted descending."""
    if len(scales) == 1:
        return scales[0] * math.log(1.0 / alpha)
    s = math.hypot(*scales)  # sqrt(Σ b²) without overflowing for scales above 1e154
    betas = tuple(b / s for b in scales)
    return s * _solve_continuous(betas, alpha)


# ---- discrete sums: exact lattice inversion ------------------------------------------------------


def _lattice_size(scales: tuple[float, ...], h_guess: float) -> int:
    return int(4.0 * h_guess + 40.0 * max(scales) + 64.0)


def _discrete_coverage_fn(scales: tuple[float, ...], n: int) -> tuple[list[float], list[float]]:
    """Grid ``u_j = 2πj/N`` for ``0 < j <= N/2`` and the weights ``φ_d(u_j)``·(2 or 1)/N."""
    ts = [math.exp(-1.0 / b) for b in scales]
    consts = [(1.0 - t) ** 2 for t in ts]
    us: list[float] = []
    ws: list[float] = []
    for j in range(1, n // 2 + 1):
        u = 2.0 * math.pi * j / n
        c = math.cos(u)
        phi = 1.0
        for t, k in zip(ts, consts, strict=True):
            phi *= k / (1.0 - 2.0 * t * c + t * t)
        # j and N - j give the same value; j = N/2 (even N) appears once
        mult = 1.0 if 2 * j == n else 2.0
        us.append(u)
        ws.append(mult * phi / n)
    return us, ws


def _discrete_exceed(us: list[float], ws: list[float], n: int, h: int) -> float:
    """``P(|S| > h)`` from the trapezoid grid (aliasing error below e^-40 by the choice of N)."""
    inside = (2 * h + 1) / n  # the j = 0 term: φ(0) D_h(0) / N
    a = h + 0.5
    for u, w in zip(us, ws, strict=True):
        inside += w * math.sin(a * u) / math.sin(0.5 * u)
    return 1.0 - inside


@functools.lru_cache(maxsize=4096)
def _discrete_half_width(scales: tuple[float, ...], alpha: float) -> float:
    """Half-width for a sum of discrete Laplace noises; ``scales`` positive, sorted descending."""
    if len(scales) == 1:
        return float(single_discrete_half_width(scales[0], alpha))
    h_cont = _continuous_half_width(scales, alpha)
    n = _lattice_size(scales, h_cont + 2.0)
    if n > _MAX_LATTICE:
        return float(math.ceil(h_cont) + len(scales))
    us, ws = _discrete_coverage_fn(scales, n)
    target = alpha * (1.0 - _SAFETY)
    h = max(0, round(h_cont))
    if _discrete_exceed(us, ws, n, h) <= target:
        while h > 0 and _discrete_exceed(us, ws, n, h - 1) <= target:
            h -= 1
    else:
        h += 1
        while _discrete_exceed(us, ws, n, h) > target:
            h += 1
            if 4 * h >= n:  # left the range where the grid is exact: fall back to the bound
                return float(math.ceil(h_cont) + len(scales))
    return float(h)


# ---- public ---------------------------------------------------------------------------------------


def half_width(scales: Sequence[float], mechanisms: Sequence[Mechanism], alpha: float = ALPHA) -> float:
    """Half-width ``h`` with ``P(|Σ noise_i| > h) <= alpha`` for independent Laplace noises.

    ``scales[i]`` is the scale ``b_i`` of term ``i`` and ``mechanisms[i]`` its kind
    (``LAPLACE`` or ``DISCRETE_LAPLACE``); terms with scale 0 add no noise. Exact for one term
    and for sums of continuous terms (up to ~1e-6 in probability, always on the safe side); exact
    for sums of discrete terms of moderate scale; conservative (``+1`` per discrete term) for
    mixtures and for very large discrete scales. Integer-valued (all discrete) sums get an
    integer ``h``.
    """
    _check_alpha(alpha)
    if len(scales) != len(mechanisms):
        raise ValueError("one mechanism per scale is needed")
    cont: list[float] = []
    disc: list[float] = []
    for b, m in zip(scales, mechanisms, strict=True):
        b = float(b)
        if math.isnan(b) or b < 0.0 or math.isinf(b):
            raise ValueError(f"a noise scale must be finite and >= 0, got {b!r}")
        if m is Mechanism.RATIO:
            raise ValueError("a ratio has no noise of its own; combine its sum and count instead")
        if b == 0.0:
            continue
        (disc if m is Mechanism.DISCRETE_LAPLACE else cont).append(b)
    if not cont and not disc:
        return 0.0
    if not cont:
        return _discrete_half_width(tuple(sorted(disc, reverse=True)), alpha)
    everything = tuple(sorted(cont + disc, reverse=True))
    return _continuous_half_width(everything, alpha) + len(disc)


def interval(
    value: float, scales: Sequence[float], mechanisms: Sequence[Mechanism], alpha: float = ALPHA
) -> tuple[float, float]:
    """``[value - h, value + h]`` with ``h = half_width(scales, mechanisms, alpha)``."""
    h = half_width(scales, mechanisms, alpha)
    return value - h, value + h


def laplace_sum_tail(scales: Sequence[float], x: float) -> float:
    """``P(Σ L_i > x)`` for independent continuous Laplace(``scales[i]``) (Gil-Pelaez series)."""
    bs = tuple(sorted((float(b) for b in scales if b > 0.0), reverse=True))
    if not bs:
        return 0.0 if x >= 0.0 else 1.0
    if len(bs) == 1:
        return 0.5 * math.exp(-x / bs[0]) if x >= 0.0 else 1.0 - 0.5 * math.exp(x / bs[0])
    s = math.hypot(*bs)
    betas = tuple(b / s for b in bs)
    y = x / s
    return _ContinuousSum(betas, max(abs(y), math.log(len(bs) / ALPHA) * sum(betas))).tail(y)


__all__ = ["ALPHA", "half_width", "interval", "laplace_sum_tail", "single_discrete_half_width"]
