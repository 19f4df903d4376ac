"""A query's noise, previewed from public metadata alone (``accord query --explain``).

The scales come from the same functions that noise a real release (:mod:`accord.node.dp`:
sensitivity from the declared bounds and ``max_rows_per_person``, the epsilon split, OpenDP's
calibration and accuracy), so a preview says exactly what the query would get. No data is read.
"""

from __future__ import annotations

from fractions import Fraction

from accord.node import dp, dp_gaussian
from accord.node.plan import Measurement, distinct_measurements, group_keys, measurements_for
from accord.query import gaussian_sum
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


def _share(m: Measurement, schema: DatasetSchema, epsilon: Fraction, parts: int, dims: int) -> NoisePreview:
    """Secure aggregation: this node's share (its scale, in the value's units) and the half-width
    of the sum of ``honest_nodes`` such shares (the coordinator combines over the real holders)."""
    assert schema.secure is not None
    honest = schema.secure.honest_nodes
    rho_m = dp_gaussian.rho_for(epsilon, schema.secure.delta_value) / parts
    noise = dp_gaussian.share_noise(m, schema, rho_m, honest, dims)
    unit = 2.0**-noise.scale_bits
    return NoisePreview(
        Mechanism.DISCRETE_GAUSSIAN, noise.sigma * unit, gaussian_sum.half_width(noise.sigma, honest) * unit
    )


def preview_aggregates(
    query: Query, schema: DatasetSchema, epsilon: Epsilon, support: bool, target: float | None
) -> tuple[AggregatePreview, ...]:
    """The noise of every aggregate of ``query`` at ``epsilon`` (``support``: the group sizes for
    suppression are measured too, and take their share), and, with a ``target`` half-width, the
    least epsilon that reaches it for each COUNT and SUM. A secure-aggregated dataset previews this
    node's noise share (:func:`_share`)."""
    parts_count = len(distinct_measurements(query, support))
    dims = len(group_keys(query, schema))

    def noise_at(m: Measurement, e: Fraction) -> NoisePreview:
        if schema.secure is not None:
            return _share(m, schema, e, parts_count, dims)
        return _noise(m, schema, e / parts_count)

    out: list[AggregatePreview] = []
    for agg, parts in zip(query.aggregates, measurements_for(query), strict=True):
        if agg.function is AggregateFunction.AVG:
            out.append(
                AggregatePreview(
                    agg.alias,
                    sum=noise_at(parts[0], epsilon.value),
                    count=noise_at(parts[1], epsilon.value),
                )
            )
            continue
        m = parts[0]
        noise = noise_at(m, epsilon.value)
        needed = None
        if target is not None:

            def width_at(e: Fraction, m: Measurement = m) -> float:
                return noise_at(m, e).half_width

            needed = least_epsilon(width_at, epsilon.value, noise.half_width, target)
        out.append(AggregatePreview(agg.alias, estimate=noise, epsilon_for_target=needed))
    return tuple(out)
