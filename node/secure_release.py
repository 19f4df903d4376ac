"""A node's share of a secure-aggregated query: exact values in fixed point plus one distributed
discrete Gaussian share each (:mod:`accord.node.dp_gaussian`), as a :class:`~accord.query.share.Share`.

The share is what the node records (its noisy vector, kept at the node) and, masked, what it sends.
The coordinator sums the masked shares of all participants; the sum is the combined noisy answer,
whose noise is the sum of every participant's share.

Overflow: every participant's encoded value is at most ``max_rows * B * 2^f`` in magnitude (public:
the declared ``max_rows`` and bounds), its noise beyond ``60 sigma`` has probability below
``e^-1800``. :func:`check_range` refuses, before anything is computed, a query whose sum over all
participants could leave the signed 64-bit range the masked sum is decoded in.
"""

from __future__ import annotations

from accord.errors import InternalError, InvalidQuery, Violation
from accord.node import dp, dp_gaussian
from accord.node.plan import (
    SUPPORT,
    MeasureKind,
    Measurement,
    distinct_measurements,
    group_keys,
    measurements_for,
)
from accord.node.release import ExactValues, release_columns
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, Query
from accord.query.schema import DatasetSchema
from accord.query.share import Measure, Share

__all__ = ["build_share", "check_range", "noise_summary"]

_TAIL_SIGMAS = 60
_LIMIT = (1 << 63) - 1


def _reach(m: Measurement, schema: DatasetSchema, bits: int) -> int:
    """The largest magnitude one node's exact encoded value of ``m`` can have (public metadata): a
    count of at most ``max_rows``; a sum of at most ``max_rows`` rows of magnitude ``B`` each."""
    if m.kind is MeasureKind.COUNT:
        return schema.max_rows
    bound = dp.sum_reach(m, schema) / schema.max_rows_per_person  # B = max(|lower|, |upper|)
    return int(schema.max_rows * bound * 2**bits) + schema.max_rows


def _measures(
    query: Query, schema: DatasetSchema, epsilon: Epsilon, honest: int, support: bool
) -> list[tuple[Measurement, dp_gaussian.ShareNoise]]:
    assert schema.secure is not None
    measurements = distinct_measurements(query, support)
    if not measurements:
        raise InternalError("a query without measurements reached the DP layer")
    rho = dp_gaussian.rho_for(epsilon.value, schema.secure.delta_value)
    rho_m = rho / len(measurements)
    dims = len(group_keys(query, schema))
    return [(m, dp_gaussian.share_noise(m, schema, rho_m, honest, dims)) for m in measurements]


def check_range(
    query: Query, schema: DatasetSchema, epsilon: Epsilon, participants: int, support: bool
) -> None:
    """Refuse (:class:`~accord.errors.InvalidQuery`) a query whose sum over ``participants`` nodes
    could overflow 64 bits, judged from public metadata alone."""
    assert schema.secure is not None
    for m, noise in _measures(query, schema, epsilon, schema.secure.honest_nodes, support):
        worst = participants * (_reach(m, schema, noise.scale_bits) + _TAIL_SIGMAS * (int(noise.sigma) + 1))
        if worst > _LIMIT:
            raise InvalidQuery(
                f"{m.kind.value}({m.column or '*'}) over {participants} nodes could exceed 64-bit integers "
                f"with dataset {schema.name!r}'s declared max_rows and bounds; its operators can lower them, "
                "or ask with a larger epsilon",
                (Violation(m.column or "*", "overflow"),),
            )


def build_share(
    query: Query,
    schema: DatasetSchema,
    exact: ExactValues,
    epsilon: Epsilon,
    query_id: str,
    node_name: str,
    participants: tuple[str, ...],
    min_group_size: int = 0,
    agreement: str = "",
    request: str = "",
) -> Share:
    """Encode ``exact`` in fixed point and add this node's noise share to every measurement."""
    if schema.secure is None:
        raise InternalError("a share was asked of a dataset without secure aggregation")
    honest = schema.secure.honest_nodes
    support = min_group_size > 0
    plan = _measures(query, schema, epsilon, honest, support)
    groups = tuple(exact.groups)
    vector: list[int] = []
    measures: list[Measure] = []
    for m, noise in plan:
        values = exact.values.get(m)
        if values is None or len(values) != len(groups):
            raise InternalError(f"the engine returned no aligned values for {m.kind.value}({m.column})")
        encoded = dp_gaussian.encode(values, noise.scale_bits)
        vector += dp_gaussian.add_share(encoded, noise.sigma)
        measures.append(Measure(m.kind.value, m.column, noise.scale_bits, noise.sensitivity, noise.sigma))
    index = {m: i for i, (m, _) in enumerate(plan)}
    cells = tuple(tuple(index[m] for m in parts) for parts in measurements_for(query))
    return Share(
        query_id=query_id,
        request=request,
        node=node_name,
        dataset=query.dataset,
        agreement=agreement,
        epsilon=epsilon,
        delta=schema.secure.delta,
        rho=str(plan[0][1].rho * len(plan)),
        honest=honest,
        participants=participants,
        columns=release_columns(query),
        groups=groups,
        measures=tuple(measures),
        cells=cells,
        support=index[SUPPORT] if support else None,
        min_group_size=min_group_size,
        suppress_below=min_group_size * schema.max_rows_per_person,
        vector=tuple(vector),
        bounds=_bounds(query, schema),
    )


def _bounds(query: Query, schema: DatasetSchema) -> tuple[tuple[str, str, str], ...]:
    out: dict[str, tuple[str, str, str]] = {}
    for agg in query.aggregates:
        if agg.function is AggregateFunction.AVG and agg.column is not None:
            spec = schema.column(agg.column)
            if spec is not None and spec.lower is not None and spec.upper is not None:
                out[agg.column] = (agg.column, repr(spec.lower), repr(spec.upper))
    return tuple(out[k] for k in sorted(out))


def noise_summary(share: Share) -> str:
    """The noise parameters the audit log records (never a value): the guarantee and each measure's
    share scale, sensitivity and fixed-point bits."""
    parts = ";".join(
        f"{m.kind}({m.column or '*'}):sigma={m.sigma!r},l2={m.sensitivity},bits={m.scale_bits}"
        for m in share.measures
    )
    return f"discrete-gaussian honest={share.honest} delta={share.delta} rho={share.rho} {parts}"
