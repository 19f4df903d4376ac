"""The combined noise of a federated answer, previewed from the nodes' previews.

Each node previews its own noise (:mod:`accord.node.preview`); the federated answer sums the nodes'
noisy values, so its noise is the sum of theirs, and its 95% half-width comes from the same exact
computation the combined release uses (:func:`accord.coordinator.intervals.half_width`; for
secure aggregation the sum of the nodes' discrete Gaussian shares,
:func:`accord.query.gaussian_sum.half_width`). The epsilon for a target half-width scales every
node's noise scale by ``epsilon / epsilon'`` (each scale is sensitivity over epsilon; for secure
aggregation by ``sqrt(rho(epsilon) / rho(epsilon'))``) and finds the least ``epsilon'`` that
reaches the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

from accord.coordinator import intervals
from accord.query import gaussian_sum
from accord.query.epsilon import Epsilon
from accord.query.preview import AggregatePreview, NodeExplanation, NoisePreview, least_epsilon
from accord.query.release import Mechanism
from accord.query.zcdp import rho_for

__all__ = ["combine_previews"]


def _combined(parts: Sequence[NoisePreview]) -> NoisePreview:
    if parts and all(p.mechanism is Mechanism.DISCRETE_GAUSSIAN for p in parts):
        # secure aggregation: one share per node, all of the same scale; the sum's exact interval
        sigma, n = max(p.noise_scale for p in parts), len(parts)
        return NoisePreview(
            Mechanism.DISCRETE_GAUSSIAN, sigma * math.sqrt(n), gaussian_sum.half_width(sigma, n)
        )
    scales = [p.noise_scale for p in parts]
    mechanisms = [p.mechanism for p in parts]
    discrete = all(m is Mechanism.DISCRETE_LAPLACE for m in mechanisms)
    return NoisePreview(
        Mechanism.DISCRETE_LAPLACE if discrete else Mechanism.LAPLACE,
        math.sqrt(math.fsum(b * b for b in scales)),
        intervals.half_width(scales, mechanisms),
    )


def combine_previews(
    nodes: Sequence[NodeExplanation], epsilon: Epsilon, target: float | None, delta: Fraction | None = None
) -> tuple[AggregatePreview, ...]:
    """Per output aggregate, the noise of the combined answer of ``nodes`` (all previewing the
    same query at ``epsilon``), and the least epsilon for ``target`` when one is given (for a
    secure-aggregated dataset, whose ``delta`` is given: the shares' scale goes as
    ``1 / sqrt(rho(epsilon))``)."""
    if not nodes:
        return ()
    out: list[AggregatePreview] = []
    for i, first in enumerate(nodes[0].aggregates):
        per_node = [n.aggregates[i] for n in nodes]
        if first.estimate is None:
            sums = [a.sum for a in per_node if a.sum is not None]
            counts = [a.count for a in per_node if a.count is not None]
            out.append(AggregatePreview(first.name, sum=_combined(sums), count=_combined(counts)))
            continue
        parts = [a.estimate for a in per_node if a.estimate is not None]
        combined = _combined(parts)
        needed = None
        if target is not None:

            def width_at(e: Fraction, parts: Sequence[NoisePreview] = parts) -> float:
                if delta is not None:
                    ratio = math.sqrt(float(rho_for(epsilon.value, delta) / rho_for(e, delta)))
                    return _combined(
                        [replace(p, noise_scale=p.noise_scale * ratio) for p in parts]
                    ).half_width
                ratio = float(epsilon.value / e)
                return intervals.half_width(
                    [p.noise_scale * ratio for p in parts], [p.mechanism for p in parts]
                )

            needed = least_epsilon(width_at, epsilon.value, combined.half_width, target)
        out.append(AggregatePreview(first.name, estimate=combined, epsilon_for_target=needed))
    return tuple(out)
