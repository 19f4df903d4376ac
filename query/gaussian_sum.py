"""Intervals for a sum of independent discrete Gaussian noises (pure Python, no numpy).

A secure-aggregated release carries the noise ``S = X_1 + ... + X_n`` where the ``X_i`` are
independent discrete Gaussians ``N_Z(0, s²)`` with one parameter ``s = sigma`` (OpenDP's ``scale``):
``P(X = k) = exp(-k²/2s²) / Z`` on the integers, ``Z = Σ_k exp(-k²/2s²)``. ``S`` is *not* a discrete
Gaussian itself. :func:`half_width` returns the smallest integer ``h`` with ``P(|S| > h) <= alpha``.

One term: the characteristic function
    ``φ(u) = E e^{iuX} = Σ_k e^{-k²/2s²} cos(uk) / Z`` is real, even and ``2π``-periodic. Poisson
    summation (``Σ_k f(k) = Σ_m f̂(2πm)`` with ``f(x) = e^{-x²/2s²} e^{iux}``) turns it into
    ``φ(u) = Σ_m e^{-s²(u + 2πm)²/2} / Σ_m e^{-2π²s²m²}``, which for ``s >= 1`` needs ``|m| <= 2`` or
    so; for ``s < 1`` the direct series is the short one (``|k| <= 10s + 1``). Both are summed in a
    form that keeps ``ln φ`` relatively accurate (it is multiplied by ``n``): for ``u`` in ``[0, π]``::

        ln φ(u) = -s²u²/2 + ln(1 + Σ_{m>=1} e^{-2πms²(πm + u)} + e^{-2πms²(πm - u)})
                          - ln(1 + 2 Σ_{m>=1} e^{-2π²s²m²})                             (s >= 1)
        ln φ(u) = ln(1 - 4 Σ_{k>=1} e^{-k²/2s²} sin²(uk/2) / Z)                          (s < 1)

    (every exponent is ``<= 0``; series terms are dropped below ``e^-60`` of the leading one). By
    the Jacobi triple product ``Σ_k q^{k²} cos(uk) = Π_{m>=1} (1 - q^{2m})(1 + 2 q^{2m-1} cos u +
    q^{4m-2})`` with ``q = e^{-1/2s²}``: every factor is positive and increasing in ``cos u``, so
    ``φ`` is positive and decreasing on ``[0, π]``.

Tails: the sub-Gaussian bound
    ``E e^{tX} = e^{t²s²/2} Σ_k e^{-(k - ts²)²/2s²} / Z <= e^{t²s²/2}``, because by Poisson
    summation ``Σ_k e^{-(k - c)²/2s²} = sqrt(2π) s Σ_m e^{-2π²s²m²} cos(2πmc)`` is largest at
    ``c = 0`` (the discrete Gaussian is ``s``-sub-Gaussian: Canonne, Kamath and Steinke 2020, "The
    Discrete Gaussian for Differential Privacy"). So ``E e^{tS} <= e^{t²ns²/2}`` and, by Chernoff on
    both sides, ``P(|S| > x) <= 2 exp(-x²/2ns²)`` for every ``x >= 0``: it is ``<= e^-40`` from
    ``x_tail = s sqrt(2n(40 + ln 2))`` on, and ``<= a`` from ``x = s sqrt(2n ln(2/a))`` on.

Several terms: exact lattice inversion
    ``S`` is integer-valued with characteristic function ``φ(u)^n``, so ``P(S = k) = (1/2π)
    ∫_{-π}^{π} φ^n cos(uk) du`` and ``P(|S| <= h) = (1/2π) ∫ φ(u)^n D_h(u) du`` with the Dirichlet
    kernel ``D_h(u) = Σ_{|k|<=h} e^{iuk} = sin((h + 1/2)u) / sin(u/2)`` (``D_h(0) = 2h + 1``). The
    trapezoid rule on ``u_j = 2πj/N``, ``j = 0..N-1``::

        P(|S| <= h) ≈ (1/N) Σ_j φ(u_j)^n D_h(u_j),      P(S = k) ≈ (1/N) Σ_j φ(u_j)^n cos(u_j k)

    is *exactly* ``Σ_{|k|<=h} Σ_l P(S = k + lN)`` (resp. ``Σ_l P(S = k + lN)``): the only error is
    aliasing, at most ``P(|S| >= N - h) <= 2 exp(-(N - h - 1)²/2ns²)``, below ``e^-40`` once
    ``N >= h + 1 + x_tail``. ``N`` may be huge, but the terms die fast: ``φ`` and ``1/sin(u/2)``
    both decrease on ``(0, π]``, so once ``φ(u_J)^n / sin(u_J/2) <= e^-40`` all the remaining terms
    (``J <= j <= N - J``, fewer than ``N``, each ``<= φ(u_J)^n / (N sin(u_J/2))``) add up to at most
    ``e^-40`` and the sum stops there. For large ``s sqrt(n)`` that is about 20 terms whatever
    ``N`` is (``N ≈ 12 s sqrt(n)`` and ``φ^n ≈ e^{-ns²u²/2}``), so ``N`` need not be kept small.
    Phases are reduced exactly in integer arithmetic, ``(h + 1/2) u_j = π ((2h + 1) j mod 2N) / N``
    and ``u_j k = 2π (jk mod N) / N``, so no precision is lost for large ``h`` or ``N`` either; the
    computed sums are accurate to about ``1e-15`` absolute whatever the scale. Caps, as sanity
    limits: ``N <= 2^62`` (``s sqrt(n)`` up to about ``4 · 10^17``) and ``2^16`` evaluated terms
    (reached only for ``s < 0.2`` and ``n`` beyond ``10^9``).

Half-width
    The target is ``P(|S| > h) <= alpha (1 - 1e-6)``, a margin (as in
    :mod:`accord.coordinator.intervals`) that dwarfs the numerical error: the computed tail is
    charged ``2 e^-40`` (aliasing and truncation) plus a generous ``1e-12`` times the sum of the
    absolute terms for rounding, so the answer stays conservative even for tiny ``alpha``. The
    search starts at the normal answer ``z sqrt(Var S) - 1/2`` (continuity correction; ``z`` the
    two-sided normal quantile), then gallops and bisects inside ``[0, h_sub]``, where ``h_sub =
    ceil(s sqrt(2n ln(2/a)))`` (``a = alpha (1 - 1e-6)``) meets the target by the sub-Gaussian
    bound. When the grid would exceed its caps ``h_sub`` itself is returned: conservative, about
    ``1.39`` times the exact answer at ``alpha = 0.05``. Results are cached, and so is the grid
    behind :func:`sum_pmf` and :func:`sum_cdf_abs` (one per ``(sigma, n)``, reaching ``x_tail``).
"""

from __future__ import annotations

import functools
import math
import operator

from accord.query.release import ALPHA

__all__ = ["discrete_gaussian_cf", "half_width", "sum_cdf_abs", "sum_pmf", "variance"]

_SAFETY = 1e-6  # solve for a tail slightly below alpha so numerical error never costs coverage
_TAIL_LOG = 40.0  # aliasing and truncation each below e^-40
_TAIL = math.exp(-_TAIL_LOG)
_ROUNDING = 1e-12  # charged per unit of Σ|term| for rounding (the true relative error is ~1e-13)
_SERIES_SIGMA = 1.0  # below: the direct series for φ; above: the Poisson-summed one
_VARIANCE_SIGMA = 2.0  # from here on Var X = sigma**2 to a relative 2e-32 (see variance())
_CUTOFF = 60.0  # series terms are dropped once below e^-60 of the leading one
_MAX_GRID = 1 << 62  # largest N (a sanity limit: phases are reduced in exact integer arithmetic)
_MAX_TERMS = 1 << 16  # most terms evaluated on one grid


def _check_sigma(sigma: float) -> float:
    s = float(sigma)
    if not math.isfinite(s) or s < 0.0:
        raise ValueError(f"sigma (the discrete Gaussian's scale) must be finite and >= 0, got {sigma!r}")
    return s


def _check_int(name: str, value: int) -> int:
    """``value`` as an ``int`` (anything with ``__index__``, numpy integers included; not a bool)."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _check_n(n: int) -> int:
    m = _check_int("the number of noise terms n", n)
    if m < 1:
        raise ValueError(f"the number of noise terms n must be an integer >= 1, got {n!r}")
    return m


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (0.0 < a < 1.0):  # also refuses nan
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


# ---- one term ------------------------------------------------------------------------------------


def _log_cf(u: float, sigma: float) -> float:
    """``ln φ(u)`` for ``u`` in ``[0, π]`` and ``sigma > 0`` (relatively accurate; see the module)."""
    if sigma < _SERIES_SIGMA:
        s2 = 2.0 * sigma * sigma
        z = 1.0
        gap = 0.0  # Σ_{k>=1} q^{k²} sin²(uk/2)
        k = 1
        while k == 1 or (k * k - 1) / s2 <= _CUTOFF:
            q = math.exp(-k * k / s2)
            s = math.sin(0.5 * u * k)
            z += 2.0 * q
            gap += q * s * s
            k += 1
        return math.log1p(-4.0 * gap / z)
    s2 = sigma * sigma
    a = 0.0
    b = 0.0
    m = 1
    # for m >= 2 the smallest exponent over u in [0, π] is 2π² s² m(m - 1)
    while m == 1 or 2.0 * math.pi * math.pi * s2 * m * (m - 1) <= _CUTOFF:
        # written alike so that a == b exactly at u = 0 (then ln φ(0) = 0 exactly)
        a += math.exp(-2.0 * math.pi * m * s2 * (math.pi * m + u))
        a += math.exp(-2.0 * math.pi * m * s2 * (math.pi * m - u))
        b += 2.0 * math.exp(-2.0 * math.pi * m * s2 * (math.pi * m))
        m += 1
    return -0.5 * s2 * u * u + math.log1p(a) - math.log1p(b)


def discrete_gaussian_cf(u: float, sigma: float) -> float:
    """Characteristic function ``φ(u) = E e^{iuX}`` of one ``N_Z(0, s²)``, ``s = sigma`` (real, even).

    ``φ(u) = Σ_m e^{-s²(u + 2πm)²/2} / Σ_m e^{-2π²s²m²}`` (Poisson summation) for ``s >= 1``, the
    direct series ``Σ_k e^{-k²/2s²} cos(uk) / Z`` below (see the module for the forms summed);
    ``u`` is first reduced modulo (the floating-point) ``2π``.
    Accurate to about ``1e-16`` absolute. ``sigma = 0`` (no noise) gives 1.
    """
    s = _check_sigma(sigma)
    if not math.isfinite(u):
        raise ValueError(f"u must be finite, got {u!r}")
    if s == 0.0:
        return 1.0
    r = min(abs(math.remainder(float(u), 2.0 * math.pi)), math.pi)
    return math.exp(_log_cf(r, s))


def variance(sigma: float, n: int) -> float:
    """``Var S = n Var X`` for ``n`` independent ``N_Z(0, s²)``, ``s = sigma``.

    ``Var X = Σ_k k² e^{-k²/2s²} / Z`` is summed directly for ``s < 2``. Otherwise ``s²`` is
    returned. By Poisson summation ``θ(s) = Σ_k e^{-k²/2s²} = sqrt(2π) s T(s)`` with
    ``T(s) = Σ_m e^{-2π²s²m²}``, and ``θ'(s) = Σ_k (k²/s³) e^{-k²/2s²}``, so
    ``Var X = s³ θ'/θ = s² + s³ T'/T = s² (1 - 8π²s² Σ_{m>=1} m² e^{-2π²s²m²} / T)``: the relative
    deficit, about ``8π²s² e^{-2π²s²}``, is below ``2e-32`` from ``s = 2`` on (and below ``1e-12``
    from ``s = 1.3`` on).
    """
    s = _check_sigma(sigma)
    n = _check_n(n)
    if s == 0.0:
        return 0.0
    if s >= _VARIANCE_SIGMA:
        return n * s * s
    s2 = 2.0 * s * s
    z = 1.0
    m2 = 0.0
    k = 1
    while k == 1 or (k * k - 1) / s2 - 2.0 * math.log(k) <= _CUTOFF:
        q = math.exp(-k * k / s2)
        z += 2.0 * q
        m2 += 2.0 * k * k * q
        k += 1
    return n * m2 / z


# ---- sums: the lattice -----------------------------------------------------------------------------


def _tail_point(sigma: float, n: int) -> float:
    """``x_tail``: ``P(|S| > x) <= e^-40`` for ``x >= x_tail`` (sub-Gaussian bound)."""
    return sigma * math.sqrt(2.0 * n * (_TAIL_LOG + math.log(2.0)))


class _Lattice:
    """The trapezoid grid for ``S``: exact (aliasing and truncation each ``<= e^-40``) for
    ``P(S = k)`` with ``|k| <= reach`` and ``P(|S| <= h)`` with ``h <= reach``.

    Holds, for ``j = 1..J-1``, ``w_j = c_j φ(u_j)^n / N`` (``c_j = 2`` for the pair ``j, N - j``,
    1 for ``j = N/2``) and ``a_j = w_j / sin(u_j/2)``.
    """

    def __init__(self, size: int, js: list[int], ws: list[float], as_: list[float]) -> None:
        self.size = size
        self.js = js
        self.ws = ws
        self.as_ = as_
        # aliasing + truncation, plus rounding charged on the absolute terms (and the j = 0 term)
        self.error = 2.0 * _TAIL + _ROUNDING * (2.0 + math.fsum(abs(a) for a in as_))

    @classmethod
    def build(cls, sigma: float, n: int, reach: int) -> _Lattice | None:
        """The grid, or None when it would exceed ``_MAX_GRID`` or ``_MAX_TERMS``."""
        size = reach + 2 + math.ceil(_tail_point(sigma, n))
        if size > _MAX_GRID:
            return None
        js: list[int] = []
        ws: list[float] = []
        as_: list[float] = []
        for j in range(1, size // 2 + 1):
            u = 2.0 * math.pi * j / size
            log_phi_n = n * _log_cf(u, sigma)
            half = math.sin(0.5 * u)
            if log_phi_n - math.log(half) <= -_TAIL_LOG:
                break  # everything from j on adds at most e^-40 (see the module)
            if len(js) >= _MAX_TERMS:
                return None
            w = (1.0 if 2 * j == size else 2.0) * math.exp(log_phi_n) / size
            js.append(j)
            ws.append(w)
            as_.append(w / half)
        return cls(size, js, ws, as_)

    def cdf_abs(self, h: int) -> float:
        """``P(|S| <= h)`` for ``0 <= h <= reach``."""
        two_n = 2 * self.size
        odd = 2 * h + 1
        terms = [odd / self.size]  # j = 0: φ(0)^n D_h(0) / N
        terms += [
            a * math.sin(math.pi * (odd * j % two_n) / self.size)
            for j, a in zip(self.js, self.as_, strict=True)
        ]
        return math.fsum(terms)

    def pmf(self, k: int) -> float:
        """``P(S = k)`` for ``|k| <= reach``."""
        size = self.size
        terms = [1.0 / size]
        terms += [
            w * math.cos(2.0 * math.pi * (k * j % size) / size) for j, w in zip(self.js, self.ws, strict=True)
        ]
        return math.fsum(terms)


def _too_large(sigma: float, n: int) -> ValueError:
    return ValueError(
        f"the lattice for sigma={sigma!r}, n={n!r} would need more than {_MAX_GRID} points or "
        f"{_MAX_TERMS} terms; use half_width, which falls back to the sub-Gaussian bound"
    )


@functools.lru_cache(maxsize=64)
def _shared_lattice(sigma: float, n: int) -> _Lattice:
    """The grid for every ``k`` and ``h`` up to ``x_tail + 1`` (``sigma > 0``); beyond, the public
    functions answer 0 or 1 without it."""
    lattice = _Lattice.build(sigma, n, math.ceil(_tail_point(sigma, n)) + 1)
    if lattice is None:
        raise _too_large(sigma, n)
    return lattice


def sum_pmf(sigma: float, n: int, k: int) -> float:
    """``P(S = k)`` for ``S`` the sum of ``n`` independent ``N_Z(0, sigma**2)``, by lattice inversion.

    ``P(S = k) = (1/N) Σ_j φ(u_j)^n cos(u_j k)`` with ``u_j = 2πj/N`` and ``N >= 2 x_tail + 2``
    (aliasing below ``e^-40`` for every ``|k| <= x_tail + 1``). Absolute error below ``1e-17`` plus
    rounding (about ``1e-16``); ``0.0`` is returned outright once ``|k| - 1 >= x_tail``, where
    ``P(S = k) <= P(|S| > |k| - 1) <= e^-40``. Raises ValueError if the grid would exceed its caps.
    """
    s = _check_sigma(sigma)
    n = _check_n(n)
    k = abs(_check_int("k", k))
    if s == 0.0:
        return 1.0 if k == 0 else 0.0
    if k - 1 >= _tail_point(s, n):
        return 0.0
    return min(1.0, max(0.0, _shared_lattice(s, n).pmf(k)))


def sum_cdf_abs(sigma: float, n: int, h: int) -> float:
    """``P(|S| <= h)`` for ``S`` the sum of ``n`` independent ``N_Z(0, sigma**2)``, by lattice inversion.

    ``P(|S| <= h) = (1/N) Σ_j φ(u_j)^n D_h(u_j)`` with ``u_j = 2πj/N`` and ``N >= 2 x_tail + 2``
    (aliasing below ``e^-40`` for every ``h <= x_tail + 1``). ``0.0`` for ``h < 0``; ``1.0`` once
    ``h >= x_tail`` (the true value is then within ``e^-40`` of 1). Raises ValueError if the grid
    would exceed its caps.
    """
    s = _check_sigma(sigma)
    n = _check_n(n)
    h = _check_int("h", h)
    if h < 0:
        return 0.0
    if s == 0.0 or h >= _tail_point(s, n):
        return 1.0
    return min(1.0, max(0.0, _shared_lattice(s, n).cdf_abs(h)))


# ---- half-width ----------------------------------------------------------------------------------


def _subgaussian_half_width(sigma: float, n: int, alpha: float) -> int:
    """``ceil(s sqrt(2n ln(2/alpha)))``, ``s = sigma``: ``P(|S| > h) <= 2 exp(-h²/2ns²) <= alpha``.

    Widened by a relative ``1e-12`` so that rounding never puts it below the real bound.
    """
    x = sigma * math.sqrt(2.0 * n * math.log(2.0 / alpha)) * (1.0 + 1e-12)
    if not math.isfinite(x):
        raise ValueError(f"sigma * sqrt(n) is too large for a half-width: sigma={sigma!r}, n={n!r}")
    return math.ceil(x)


def _normal_quantile(p: float) -> float:
    """``z >= 0`` with ``P(|N(0,1)| > z) = erfc(z/√2) = p`` (Newton; only a starting point)."""
    # erfc(z/√2) <= e^{-z²/2}, so this is at or right of the root; erfc is convex there, so the
    # first Newton step lands left of the root and the next ones climb to it
    z = math.sqrt(2.0 * math.log(1.0 / p))
    for _ in range(60):
        f = math.erfc(z / math.sqrt(2.0)) - p
        d = math.sqrt(2.0 / math.pi) * math.exp(-0.5 * z * z)
        if d == 0.0:
            break
        step = f / d
        z = max(0.0, z + step)
        if abs(step) < 1e-12 * max(1.0, z):
            break
    return z


@functools.lru_cache(maxsize=4096)
def _half_width(sigma: float, n: int, alpha: float) -> int:
    if sigma == 0.0:
        return 0
    target = alpha * (1.0 - _SAFETY)
    h_sub = _subgaussian_half_width(sigma, n, target)
    lattice = _Lattice.build(sigma, n, h_sub)
    if lattice is None:
        return h_sub
    grid = lattice

    def ok(h: int) -> bool:
        return 1.0 - grid.cdf_abs(h) + grid.error <= target

    guess = math.ceil(_normal_quantile(target) * math.sqrt(variance(sigma, n)) - 0.5)
    guess = min(max(guess, 0), h_sub)
    # invariant: lo fails (lo = -1 fails by definition), hi passes (h_sub does, by the bound)
    lo, hi = -1, h_sub
    step = 1
    if ok(guess):
        hi = guess
        while hi - step > lo:
            if ok(hi - step):
                hi -= step
                step *= 2
            else:
                lo = hi - step
                break
    else:
        lo = guess
        while lo + step < hi:
            if ok(lo + step):
                hi = lo + step
                break
            lo += step
            step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def half_width(sigma: float, n: int, alpha: float = ALPHA) -> int:
    """Smallest integer ``h >= 0`` with ``P(|X_1 + ... + X_n| > h) <= alpha (1 - 1e-6)``.

    The ``X_i`` are independent ``N_Z(0, sigma**2)`` (``sigma`` is OpenDP's discrete Gaussian ``scale``;
    ``sigma = 0`` means no noise and gives 0). Exact by lattice inversion; for ``sigma sqrt(n)``
    beyond about ``4 · 10^17`` the conservative sub-Gaussian ``ceil(sigma sqrt(2n ln(2/a)))``,
    ``a = alpha (1 - 1e-6)``, instead. Cached.
    """
    s = _check_sigma(sigma)
    n = _check_n(n)
    a = _check_alpha(alpha)
    return _half_width(s, n, a)
