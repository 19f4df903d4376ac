"""A query's noise, previewed from public metadata alone (``accord query --explain``).

The scales come from the same functions that noise a real release (:mod:`accord.node.dp`:
sensitivity from the declared bounds and ``max_rows_per_person``, the epsilon split, OpenDP's
calibration and accuracy), so a preview says exactly what the query would get. No data is read.
"""

from __future__ import annotations

from fractions import Fraction

from accord.node import dp
from accord.node.plan import Measurement, distinct_measurements, measurements_for
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, Query
from accord.query.preview import AggregatePreview, NoisePreview, least_epsilon
from accord.query.release import Mechanism
from accord.query.schema import DatasetSchema

__all__ = ["preview_aggregates"]


def _noise(m: Measurement, schema: DatasetSchema, epsilon_m: Fraction) -> NoisePreview:
    integer = dp.is_integer_valued(m, schema)
    mechanism = Mechanism.DISCRETE_LAPLACE if integer else Mechanism.LAPLACE
    scale = dp.calibrate(dp.sensitivity(m, schema), epsilon_m, integer)
    return NoisePreview(mechanism, scale, dp.half_width(mechanism, scale))


def preview_aggregates(
    query: Query, schema: DatasetSchema, epsilon: Epsilon, support: bool, target: float | None
) -> tuple[AggregatePreview, ...]:
    """The noise of every aggregate of ``query`` at ``epsilon`` (``support``: the group sizes for
    suppression are measured too, and take their share), and, with a ``target`` half-width, the
    least epsilon that reaches it for each COUNT and SUM."""
    parts_count = len(distinct_measurements(query, support))
    eps_m = dp.epsilon_split(query, epsilon.value, support)
    out: list[AggregatePreview] = []
    for agg, parts in zip(query.aggregates, measurements_for(query), strict=True):
        if agg.function is AggregateFunction.AVG:
            out.append(
                AggregatePreview(
                    agg.alias, sum=_noise(parts[0], schema, eps_m), count=_noise(parts[1], schema, eps_m)
                )
            )
            continue
        m = parts[0]
        noise = _noise(m, schema, eps_m)
        needed = None
        if target is not None:

            def width_at(e: Fraction, m: Measurement = m) -> float:
                return _noise(m, schema, e / parts_count).half_width

            needed = least_epsilon(width_at, epsilon.value, noise.half_width, target)
        out.append(AggregatePreview(agg.alias, estimate=noise, epsilon_for_target=needed))
    return tuple(out)
