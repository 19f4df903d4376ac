"""Differential privacy for one node: sensitivity, budget split, noise and intervals.

This is the only module in Accord that imports :mod:`opendp`. Everything random in a release
comes from OpenDP's samplers; nothing here touches :mod:`random` or :mod:`numpy.random`.

Neighbouring datasets are **add/remove one person** (unbounded DP): two datasets are neighbours
when one of them holds every row of the other plus the (at most ``max_rows_per_person``, after
bounding) rows of one more person. Under substitution (replace one person) every sensitivity
below would double; Accord does not use that notion.

Only the ``contrib`` feature is enabled. The test-only features (``honest-but-curious``,
``floating-point``) are never turned on, here or anywhere else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal, overload

import opendp.prelude as dp

from accord.errors import InternalError
from accord.node.plan import MeasureKind, Measurement, distinct_measurements
from accord.query.model import Query
from accord.query.release import ALPHA, Estimate, Mechanism
from accord.query.schema import ColumnType, DatasetSchema

dp.enable_features("contrib")


I64_SAFE = 2**62
"""Largest exact integer magnitude handed to OpenDP's 64-bit integer Laplace. OpenDP saturates
at ``2**63 - 1``; staying under ``2**62`` leaves room for any noise it could plausibly draw."""

_MAX_NUDGES = 64


# ---- sensitivity -----------------------------------------------------------------------------


def sensitivity(m: Measurement, schema: DatasetSchema) -> int | float:
    """L1 sensitivity of the vector of ``m`` over **all** groups, add/remove one person.

    The engine keeps at most ``k = schema.max_rows_per_person`` rows per person and clamps each
    summed value to the column's declared ``[lower, upper]`` before aggregating.

    * COUNT (``COUNT(*)`` or ``COUNT(col)``): adding or removing one person adds or removes at
      most k rows. Each row changes exactly one group's count by 1 (a NULL in ``col`` changes
      none), so even when the k rows fall in k different groups the L1 change of the whole group
      vector is at most k.
    * SUM(col): each of the person's at most k rows moves one group's sum by its clamped value,
      whose magnitude is at most ``max(|lower|, |upper|)`` (NULLs contribute 0). The L1 change
      of the group vector is at most ``k * max(|lower|, |upper|)``.

    Under replace-one-person these would be ``2k`` and ``2k * max(|lower|, |upper|)``.

    A SUM over an INTEGER column returns an ``int``; over a FLOAT column a ``float`` rounded
    *up* from the exact product, so it is never an underestimate.
    """
    if m.kind is MeasureKind.COUNT:
        return schema.max_rows_per_person
    exact = sum_reach(m, schema)
    if is_integer_valued(m, schema):
        return int(exact)
    return _float_up(exact)


def sum_reach(m: Measurement, schema: DatasetSchema) -> Fraction:
    """``k * max(|lower|, |upper|)``, exactly: how far one person's (at most ``k``) clamped rows can
    move a SUM of ``m``'s column in all (the L1 sensitivity; with the engine's exact arithmetic)."""
    spec = schema.column(m.column) if m.column is not None else None
    if spec is None or spec.lower is None or spec.upper is None:
        raise InternalError(f"SUM over {m.column!r} reached the DP layer without declared bounds")
    return schema.max_rows_per_person * max(abs(Fraction(spec.lower)), abs(Fraction(spec.upper)))


def is_integer_valued(m: Measurement, schema: DatasetSchema) -> bool:
    """Counts and sums of INTEGER columns are integers and get discrete Laplace noise."""
    if m.kind is MeasureKind.COUNT:
        return True
    spec = schema.column(m.column) if m.column is not None else None
    return spec is not None and spec.type is ColumnType.INTEGER


# ---- budget ----------------------------------------------------------------------------------


def epsilon_split(query: Query, epsilon: Fraction, support: bool = False) -> Fraction:
    """Epsilon spent on each distinct measurement of ``query``: an equal, exact split.

    The measurements are released by separate mechanisms on the same data, so by sequential
    composition the query costs the sum of their epsilons, which is exactly ``epsilon``. A
    measurement shared by several aggregates (``AVG(x)`` and ``COUNT(x)``) is noised once and
    charged once. With ``support`` the group sizes for suppression are one more measurement
    (unless the query counts rows itself).
    """
    n = len(distinct_measurements(query, support))
    if n == 0:
        raise InternalError("a query without measurements reached the DP layer")
    return Fraction(epsilon) / n


# ---- noise -----------------------------------------------------------------------------------


def _float_up(x: Fraction) -> float:
    """The smallest float that is >= ``x``."""
    f = float(x)
    return f if Fraction(f) >= x else math.nextafter(f, math.inf)


@functools.lru_cache(maxsize=256)
def _laplace(integer: bool, scale: float) -> Any:
    """The vector Laplace measurement over a whole group vector, built once per (domain, scale).

    Integers: OpenDP's discrete Laplace on ``Vec<i64>`` under the L1 distance. Floats: OpenDP's
    floating-point-safe Laplace on ``Vec<f64>`` (no NaN) under the L1 distance.
    """
    if integer:
        space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    else:
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    return dp.m.make_laplace(*space, scale=scale)


def _d_in(sens: int | float, integer: bool) -> int | float:
    return int(sens) if integer else float(sens)


@functools.lru_cache(maxsize=1024)
def calibrate(sens: int | float, epsilon_m: Fraction, integer: bool) -> float:
    """The Laplace scale for ``sens``/``epsilon_m``, checked against OpenDP's own privacy map.

    ``sens / epsilon_m`` is rounded to a float; if OpenDP then reports a privacy loss above
    ``epsilon_m`` at ``d_in = sens`` (float rounding), the scale is nudged up one ulp at a time.

    The result depends only on the arguments (the privacy map is deterministic), so it is cached:
    a node sees the same few (sensitivity, epsilon) pairs again and again, and asking OpenDP's map
    costs about as much as drawing the noise. Errors are not cached.
    """
    if epsilon_m <= 0:
        raise InternalError("epsilon per measurement must be positive")
    if sens < 0:
        raise InternalError("negative sensitivity")
    if sens == 0:
        return 0.0  # the measurement is constant (e.g. SUM over bounds [0, 0]): nothing to hide
    if integer and sens > I64_SAFE:
        raise InternalError("sensitivity does not fit OpenDP's 64-bit integers")
    scale = _float_up(Fraction(sens) / epsilon_m)
    d_in = _d_in(sens, integer)
    for _ in range(_MAX_NUDGES):
        if not math.isfinite(scale):
            break
        spent = Fraction(_laplace(integer, scale).map(d_in))
        if spent <= epsilon_m:
            return scale
        scale = math.nextafter(scale, math.inf)
    raise InternalError("could not calibrate a Laplace scale within the measurement's epsilon")


@overload
def add_noise(values: Sequence[int | float], scale: float, integer: Literal[True]) -> list[int]: ...
@overload
def add_noise(values: Sequence[int | float], scale: float, integer: Literal[False]) -> list[float]: ...
@overload
def add_noise(values: Sequence[int | float], scale: float, integer: bool) -> list[int] | list[float]: ...
def add_noise(values: Sequence[int | float], scale: float, integer: bool) -> list[int] | list[float]:
    """Noise a whole group vector with one call of the cached vector mechanism."""
    if integer:
        ints: list[int] = []
        for v in values:
            if isinstance(v, float):
                if not v.is_integer():
                    raise InternalError("an integer-valued measurement produced a fractional value")
                v = int(v)
            if not isinstance(v, int) or not -I64_SAFE <= v <= I64_SAFE:
                raise InternalError("an integer measurement is missing or outside 64-bit range")
            ints.append(int(v))
        if scale == 0.0:
            return ints
        out = _laplace(True, scale)(ints)
        return [int(x) for x in out]
    floats: list[float] = []
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InternalError("a float measurement is missing or not finite")
        floats.append(float(v))
    if scale == 0.0:
        return floats
    noisy = _laplace(False, scale)(floats)
    return [float(x) for x in noisy]


# ---- discrete Gaussian shares (secure aggregation; see accord.node.dp_gaussian) ----------------


@functools.lru_cache(maxsize=256)
def _gaussian(scale: float) -> Any:
    """OpenDP's discrete Gaussian on ``Vec<i64>`` under the L2 distance, zCDP."""
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")
    return dp.m.make_gaussian(*space, scale=scale)


def gaussian_rho(scale: float, sensitivity: int) -> Fraction:
    """The zCDP rho OpenDP's privacy map gives its discrete Gaussian of ``scale`` at L2
    ``sensitivity`` (conservatively rounded by OpenDP)."""
    return Fraction(_gaussian(scale).map(sensitivity))


def add_gaussian(values: Sequence[int], scale: float) -> list[int]:
    """``values`` plus OpenDP's discrete Gaussian noise of ``scale``, one draw per entry."""
    ints = [int(v) for v in values]
    if scale == 0.0:
        return ints
    return [int(x) for x in _gaussian(scale)(ints)]


# ---- intervals -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def half_width(mechanism: Mechanism, scale: float, alpha: float = ALPHA) -> float:
    """Half-width ``a`` of the two-sided interval for one noise draw: P(|noise| > a) <= alpha.

    Discrete Laplace: OpenDP's ``discrete_laplacian_scale_to_accuracy`` (conservative: the
    noise is an integer, so the interval covers with probability >= 1 - alpha). Continuous:
    ``laplacian_scale_to_accuracy`` = ``scale * ln(1/alpha)``.
    """
    if scale == 0.0:
        return 0.0
    if mechanism is Mechanism.DISCRETE_LAPLACE:
        width = float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    elif mechanism is Mechanism.LAPLACE:
        width = float(dp.laplacian_scale_to_accuracy(scale, alpha))
    else:
        raise InternalError(f"no noise interval for mechanism {mechanism.value}")
    if math.isnan(width):
        raise InternalError("OpenDP returned no accuracy for this scale")
    return max(0.0, width)


def interval(value: float, mechanism: Mechanism, scale: float, alpha: float = ALPHA) -> tuple[float, float]:
    """``[value - a, value + a]``: covers the exact value with probability >= 1 - alpha."""
    a = half_width(mechanism, scale, alpha)
    return value - a, value + a


def release_measurement(
    m: Measurement, schema: DatasetSchema, values: Sequence[int | float], epsilon_m: Fraction
) -> tuple[Estimate, ...]:
    """Noise the exact group vector of ``m`` at ``epsilon_m``: one Estimate per group, in order."""
    integer = is_integer_valued(m, schema)
    mechanism = Mechanism.DISCRETE_LAPLACE if integer else Mechanism.LAPLACE
    scale = calibrate(sensitivity(m, schema), epsilon_m, integer)
    noisy = add_noise(values, scale, integer)
    a = half_width(mechanism, scale)
    return tuple(Estimate(float(v), scale, float(v) - a, float(v) + a, mechanism) for v in noisy)


__all__ = [
    "ALPHA",
    "I64_SAFE",
    "add_gaussian",
    "add_noise",
    "calibrate",
    "epsilon_split",
    "gaussian_rho",
    "half_width",
    "interval",
    "is_integer_valued",
    "release_measurement",
    "sensitivity",
    "sum_reach",
]
