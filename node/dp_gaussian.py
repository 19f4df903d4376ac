"""Distributed discrete Gaussian noise: each node adds one *share*, the sum of the shares protects.

The proof of the guarantee is ``docs/secure-aggregation.md``; this module computes what it states.

* A secure-aggregated query with the analyst's ``epsilon`` and the federation's ``delta`` is given
  the zCDP budget ``rho`` of :func:`accord.query.zcdp.rho_for` (Bun and Steinke's conversion,
  rounded down to an exact fraction): the query is (epsilon, delta)-DP and the ledger charges the
  analyst's ``epsilon`` exactly, as for every other query.
* ``rho`` is split equally over the query's distinct measurements (zCDP composes by addition).
* Measurement ``m`` (L2 sensitivity ``Delta`` in encoded units) gets a share scale ``sigma`` such
  that the sum of ``t`` (the federation's ``honest_nodes``) independent N_Z(0, sigma^2) vectors of
  dimension ``d`` (the number of groups) is ``rho_m``-zCDP (Kairouz, Liu and Steinke 2021,
  Theorem 3)::

      Delta^2 / (2 t sigma^2) + tau d / 4 <= rho_m,    tau = 10 sum_{k=1}^{t-1} exp(-2 pi^2 sigma^2 k/(k+1))

  The first term is asked of OpenDP's own privacy map (its discrete Gaussian at scale
  ``sigma sqrt(t)``, which rounds conservatively); ``tau d / 4`` is added, rounded up.
* Each node draws its share with OpenDP's ``make_gaussian`` over integer vectors (zCDP), through
  :mod:`accord.node.dp`, still the only module that imports OpenDP. Nothing here draws randomness.

Fixed-point encoding: counts and sums of integer columns are integers already (``scale_bits`` 0).
A sum of a float column is released in units of ``2**-scale_bits`` (:func:`scale_bits`): the
engine's exact sum is rounded to the nearest unit, so neighbouring datasets' encoded sums differ
by at most ``k B 2^f`` plus one per group the person's ``k`` rows touch: the sensitivity is
``ceil(k B 2^f) + k``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from accord.errors import InternalError
from accord.node import dp
from accord.node.plan import MeasureKind, Measurement
from accord.query.schema import DatasetSchema
from accord.query.zcdp import rho_for, to_epsilon

MAX_SCALE_BITS = 20
"""Finest fixed-point unit for float sums: 2**-20 (about a millionth)."""
ENCODED_LIMIT = 2**44
"""A float sum's sensitivity is kept under this many units, so the encoded values stay far inside
the 64-bit ring whatever the number of nodes (see :func:`scale_bits`)."""
_MAX_NUDGES = 64
MIN_SHARE_SCALE = 0.5
"""The narrowest share: the bound on sums of discrete Gaussians assumes sigma >= 1/2."""
_ROUND = Fraction(1, 10**12)


@dataclass(frozen=True)
class ShareNoise:
    """How one measurement is noised: the share scale (OpenDP's ``scale``, in encoded units), the
    L2 sensitivity and fixed-point bits it was calibrated for, and its zCDP budget."""

    sigma: float
    sensitivity: int
    scale_bits: int
    rho: Fraction


def scale_bits(m: Measurement, schema: DatasetSchema) -> int:
    """Fixed-point bits of ``m``: 0 for integer-valued measurements; for a float sum, the most bits
    (up to :data:`MAX_SCALE_BITS`) that keep ``k B 2^f`` under :data:`ENCODED_LIMIT`. Public
    metadata only (bounds and rows per person)."""
    if dp.is_integer_valued(m, schema):
        return 0
    reach = dp.sum_reach(m, schema)
    bits = MAX_SCALE_BITS
    while bits > 0 and reach * 2**bits > ENCODED_LIMIT:
        bits -= 1
    return bits


def l2_sensitivity(m: Measurement, schema: DatasetSchema, bits: int) -> int:
    """The L2 sensitivity of ``m``'s group vector in encoded units, add/remove one person.

    A person has at most ``k`` rows. COUNT: at most ``k`` rows each move one group by 1; the L2
    norm of such a change is at most ``k`` (all in one group). SUM: each row moves one group by at
    most ``B = max(|lower|, |upper|)``, so at most ``k B`` (integers), and in fixed point
    ``ceil(k B 2^f) + k`` (each of at most ``k`` groups rounds by less than one unit more)."""
    k = schema.max_rows_per_person
    if m.kind is MeasureKind.COUNT:
        return k
    reach = dp.sum_reach(m, schema)
    if dp.is_integer_valued(m, schema):
        return int(reach)
    ceiling: int = math.ceil(reach * 2**bits)
    return ceiling + k


def encode(values: Sequence[int | float], bits: int) -> list[int]:
    """The engine's exact values in fixed point: integers as they are, floats rounded to units of
    ``2**-bits`` (half to even)."""
    out: list[int] = []
    for v in values:
        if isinstance(v, float):
            if not math.isfinite(v):
                raise InternalError("a measurement is not finite")
            out.append(round(v * 2**bits) if bits else _integral(v))
        elif isinstance(v, int):
            out.append(v << bits)
        else:
            raise InternalError("a measurement is missing")
    return out


def _integral(v: float) -> int:
    if not v.is_integer():
        raise InternalError("an integer-valued measurement produced a fractional value")
    return int(v)


def _tau_bound(sigma: float, honest: int, dims: int) -> Fraction:
    """``tau d / 4`` of the module docstring, rounded up."""
    tau = 10.0 * math.fsum(
        math.exp(-2.0 * math.pi**2 * sigma * sigma * k / (k + 1)) for k in range(1, honest)
    )
    return Fraction(tau * dims / 4.0) * (1 + _ROUND) + (Fraction(1, 10**300) if tau > 0 else 0)


@functools.lru_cache(maxsize=1024)
def share_scale(sensitivity: int, rho_m: Fraction, honest: int, dims: int) -> float:
    """The share scale ``sigma`` for one measurement (see the module docstring): the sum of
    ``honest`` shares of dimension ``dims`` is ``rho_m``-zCDP at L2 sensitivity ``sensitivity``."""
    if rho_m <= 0 or honest < 1 or dims < 1:
        raise InternalError("share calibration needs rho > 0, at least one honest node and one group")
    if sensitivity < 0:
        raise InternalError("negative sensitivity")
    if sensitivity == 0:
        return 0.0

    def fits(sigma: float) -> bool:
        central = dp.gaussian_rho(sigma * math.sqrt(honest) * (1 - 1e-12), sensitivity)
        return central + _tau_bound(sigma, honest, dims) <= rho_m

    # The bound (Kairouz-Liu-Steinke, Theorem 3) holds for sigma >= 1/2: no share is narrower.
    low = max(math.sqrt(sensitivity * sensitivity / (2.0 * float(rho_m) * honest)), MIN_SHARE_SCALE)
    high = low * (1 + 1e-9)
    if fits(high):  # the usual case: the tau term is negligible
        return high
    for _ in range(_MAX_NUDGES):  # narrow shares: widen until the bound holds, then bisect
        low, high = high, high * 2
        if fits(high):
            break
    else:
        raise InternalError("could not calibrate a discrete Gaussian share within the measurement's budget")
    for _ in range(_MAX_NUDGES):
        middle = (low + high) / 2
        if fits(middle):
            high = middle
        else:
            low = middle
        if high - low <= high * 1e-12:
            break
    return high


def share_noise(m: Measurement, schema: DatasetSchema, rho_m: Fraction, honest: int, dims: int) -> ShareNoise:
    bits = scale_bits(m, schema)
    sens = l2_sensitivity(m, schema, bits)
    return ShareNoise(share_scale(sens, rho_m, honest, dims), sens, bits, rho_m)


def add_share(values: Sequence[int], sigma: float) -> list[int]:
    """``values`` plus one discrete Gaussian share (OpenDP) of scale ``sigma`` per entry."""
    return dp.add_gaussian(values, sigma)


__all__ = [
    "ENCODED_LIMIT",
    "MAX_SCALE_BITS",
    "MIN_SHARE_SCALE",
    "ShareNoise",
    "add_share",
    "encode",
    "l2_sensitivity",
    "rho_for",
    "scale_bits",
    "share_noise",
    "share_scale",
    "to_epsilon",
]
