"""Conversion between the generated protobuf types and Accord's own dataclasses.

Generated ``*_pb2`` types stop here: servicers and clients call these functions at the edge and
everything behind them works on :mod:`accord.query.model`, :mod:`accord.query.schema` and
:mod:`accord.query.release`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from accord.errors import ConfigError, InternalError, InvalidQuery, Unauthenticated
from accord.policies.secagg import SignedShare
from accord.policies.signing import SignedQuery
from accord.protos.convert_secure import secure_share_from_pb, secure_share_to_pb
from accord.protos.v1 import common_pb2 as pb
from accord.protos.v1 import coordinator_pb2 as cpb
from accord.protos.v1 import node_pb2 as npb
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, Literal
from accord.query.release import (
    Cell,
    Estimate,
    FederatedRelease,
    Mechanism,
    Release,
    ReleaseColumn,
    ReleaseRow,
)
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema, SecureAggregation

__all__ = [
    "MECHANISM_FROM_PB",
    "MECHANISM_TO_PB",
    "catalog_from_pb",
    "catalog_to_pb",
    "epsilon_from_pb",
    "federated_from_pb",
    "federated_to_pb",
    "missing_to_pb",
    "release_from_pb",
    "release_to_pb",
    "schema_from_pb",
    "schema_to_pb",
    "signed_query_from_pb",
    "signed_query_to_pb",
    "value_from_pb",
    "value_to_pb",
]


# ---- literals ----------------------------------------------------------------------------------


def value_to_pb(value: Literal) -> pb.Value:
    if value is None:
        return pb.Value(null_value=True)
    if isinstance(value, bool):  # before int: bool is an int subclass
        return pb.Value(bool_value=value)
    if isinstance(value, int):
        return pb.Value(int_value=value)
    if isinstance(value, float):
        return pb.Value(float_value=value)
    if isinstance(value, str):
        return pb.Value(string_value=value)
    raise InternalError(f"cannot put a {type(value).__name__} on the wire as a value")


def value_from_pb(msg: pb.Value) -> Literal:
    kind = msg.WhichOneof("kind")
    if kind is None:
        raise InternalError("a value arrived with none of its kinds set (not even null_value)")
    if kind == "null_value":
        return None
    result: Literal = getattr(msg, kind)
    return result


# ---- signed queries ----------------------------------------------------------------------------


def signed_query_to_pb(signed: SignedQuery) -> pb.SignedQuery:
    return pb.SignedQuery(payload=signed.payload, signature=signed.signature, certificate=signed.certificate)


def signed_query_from_pb(msg: pb.SignedQuery) -> SignedQuery:
    """The envelope's three byte strings, as they arrived (nothing is decoded or re-encoded)."""
    if not msg.payload or not msg.signature or not msg.certificate:
        raise Unauthenticated(
            "the request carries no signed query (payload, signature and certificate are all needed); "
            "send queries through the Accord client, which signs them",
            "QUERY_NOT_SIGNED",
        )
    return SignedQuery(bytes(msg.payload), bytes(msg.signature), bytes(msg.certificate))


# ---- catalog -----------------------------------------------------------------------------------

_TYPE_TO_PB = {
    ColumnType.INTEGER: pb.INTEGER,
    ColumnType.FLOAT: pb.FLOAT,
    ColumnType.BOOLEAN: pb.BOOLEAN,
    ColumnType.STRING: pb.STRING,
}
_TYPE_FROM_PB = {v: k for k, v in _TYPE_TO_PB.items()}


def schema_to_pb(schema: DatasetSchema) -> pb.DatasetSchema:
    return pb.DatasetSchema(
        name=schema.name,
        privacy_unit=schema.privacy_unit,
        max_rows_per_person=schema.max_rows_per_person,
        description=schema.description,
        secure_honest_nodes=schema.secure.honest_nodes if schema.secure else 0,
        secure_delta=schema.secure.delta if schema.secure else "",
        secure_holders=list(schema.secure.holders) if schema.secure else [],
        columns=[
            pb.ColumnSpec(
                name=c.name,
                type=_TYPE_TO_PB[c.type],
                bounded=c.bounded,
                lower=float(c.lower) if c.lower is not None else 0.0,
                upper=float(c.upper) if c.upper is not None else 0.0,
                has_categories=c.categories is not None,
                categories=[value_to_pb(v) for v in c.categories or ()],
                description=c.description,
            )
            for c in schema.columns
        ],
    )


def _column_from_pb(c: pb.ColumnSpec) -> ColumnSpec:
    ctype = _TYPE_FROM_PB.get(c.type)
    if ctype is None:
        raise InternalError(f"column {c.name!r} has an unknown type on the wire")
    lower: int | float | None = None
    upper: int | float | None = None
    if c.bounded:
        lower, upper = c.lower, c.upper
        if ctype is ColumnType.INTEGER:
            if not (c.lower.is_integer() and c.upper.is_integer()):
                raise InternalError(f"integer column {c.name!r} arrived with non-integer bounds")
            lower, upper = int(c.lower), int(c.upper)
    return ColumnSpec(
        name=c.name,
        type=ctype,
        lower=lower,
        upper=upper,
        categories=tuple(value_from_pb(v) for v in c.categories) if c.has_categories else None,
        description=c.description,
    )


def schema_from_pb(msg: pb.DatasetSchema) -> DatasetSchema:
    try:
        return DatasetSchema(
            name=msg.name,
            columns=tuple(_column_from_pb(c) for c in msg.columns),
            privacy_unit=msg.privacy_unit,
            max_rows_per_person=msg.max_rows_per_person,
            description=msg.description,
            secure=SecureAggregation(msg.secure_honest_nodes, msg.secure_delta, tuple(msg.secure_holders))
            if msg.secure_honest_nodes
            else None,
        )
    except ConfigError as err:  # a schema the node itself could never have loaded
        raise InternalError(f"dataset {msg.name!r} arrived with an invalid schema: {err.message}") from None


def catalog_to_pb(node: str, schemas: Iterable[DatasetSchema]) -> npb.GetCatalogResponse:
    return npb.GetCatalogResponse(node=node, datasets=[schema_to_pb(s) for s in schemas])


def catalog_from_pb(msg: npb.GetCatalogResponse) -> tuple[str, tuple[DatasetSchema, ...]]:
    return msg.node, tuple(schema_from_pb(s) for s in msg.datasets)


# ---- releases ----------------------------------------------------------------------------------

MECHANISM_TO_PB = {
    Mechanism.DISCRETE_LAPLACE: pb.DISCRETE_LAPLACE,
    Mechanism.LAPLACE: pb.LAPLACE,
    Mechanism.RATIO: pb.RATIO,
    Mechanism.DISCRETE_GAUSSIAN: pb.DISCRETE_GAUSSIAN,
}
MECHANISM_FROM_PB = {v: k for k, v in MECHANISM_TO_PB.items()}
_FUNC_TO_PB = {
    AggregateFunction.COUNT: pb.COUNT,
    AggregateFunction.SUM: pb.SUM,
    AggregateFunction.AVG: pb.AVG,
}
_FUNC_FROM_PB = {v: k for k, v in _FUNC_TO_PB.items()}


def _estimate_to_pb(e: Estimate) -> pb.Estimate:
    return pb.Estimate(
        value=e.value,
        noise_scale=e.noise_scale,
        ci_low=e.ci_low,
        ci_high=e.ci_high,
        mechanism=MECHANISM_TO_PB[e.mechanism],
    )


def _estimate_from_pb(msg: pb.Estimate) -> Estimate:
    mech = MECHANISM_FROM_PB.get(msg.mechanism)
    if mech is None:
        raise InternalError("an estimate arrived without a known mechanism")
    # Each field is read once (every read builds a Python float); NaN is the only float that is
    # not equal to itself.
    value, scale, low, high = msg.value, msg.noise_scale, msg.ci_low, msg.ci_high
    if value != value or scale != scale or low != low or high != high:
        raise InternalError("an estimate arrived with NaN")
    return Estimate(value, scale, low, high, mech)


def _cell_to_pb(cell: Cell) -> pb.Cell:
    return pb.Cell(
        estimate=_estimate_to_pb(cell.estimate),
        sum=None if cell.sum is None else _estimate_to_pb(cell.sum),  # None: the field stays unset
        count=None if cell.count is None else _estimate_to_pb(cell.count),
    )


def _cell_from_pb(msg: pb.Cell) -> Cell:
    return Cell(
        estimate=_estimate_from_pb(msg.estimate),
        sum=_estimate_from_pb(msg.sum) if msg.HasField("sum") else None,
        count=_estimate_from_pb(msg.count) if msg.HasField("count") else None,
    )


def _columns_to_pb(columns: Iterable[ReleaseColumn]) -> list[pb.ReleaseColumn]:
    return [
        pb.ReleaseColumn(
            name=c.name,
            function=_FUNC_TO_PB[c.function] if c.function is not None else pb.AGGREGATE_FUNCTION_UNSPECIFIED,
            column=c.column or "",
        )
        for c in columns
    ]


def _function_from_pb(c: pb.ReleaseColumn) -> AggregateFunction | None:
    if c.function == pb.AGGREGATE_FUNCTION_UNSPECIFIED:
        return None  # a group-key column
    function = _FUNC_FROM_PB.get(c.function)
    if function is None:
        raise InternalError(f"output column {c.name!r} arrived with an unknown aggregate function")
    return function


def _columns_from_pb(msgs: Iterable[pb.ReleaseColumn]) -> tuple[ReleaseColumn, ...]:
    return tuple(
        ReleaseColumn(name=c.name, function=_function_from_pb(c), column=c.column or None) for c in msgs
    )


def _rows_to_pb(rows: Iterable[ReleaseRow]) -> list[pb.ReleaseRow]:
    return [
        pb.ReleaseRow(
            group=[value_to_pb(v) for v in r.group],
            cells=[_cell_to_pb(c) for c in r.cells],
            suppressed=r.suppressed,
            support=None if r.support is None else _estimate_to_pb(r.support),
        )
        for r in rows
    ]


def _rows_from_pb(
    msgs: Iterable[pb.ReleaseRow], columns: tuple[ReleaseColumn, ...]
) -> tuple[ReleaseRow, ...]:
    groups = sum(1 for c in columns if c.is_group)
    aggregates = len(columns) - groups
    rows = []
    for r in msgs:
        group, cells, suppressed = r.group, r.cells, r.suppressed
        expected = 0 if suppressed else aggregates
        if len(group) != groups or len(cells) != expected or (suppressed and r.HasField("support")):
            raise InternalError(
                f"a release row arrived with {len(group)} group value(s) and {len(cells)} cell(s) "
                f"for {groups} group column(s) and {aggregates} aggregate(s)"
                + (" (suppressed, so none)" if suppressed else "")
            )
        # List comprehensions, not generators: cheaper for these short sequences, and releases
        # are converted once per node per query on the coordinator.
        rows.append(
            ReleaseRow(
                group=tuple([value_from_pb(v) for v in group]),
                cells=tuple([_cell_from_pb(c) for c in cells]),
                suppressed=suppressed,
                support=_estimate_from_pb(r.support) if r.HasField("support") else None,
            )
        )
    return tuple(rows)


def epsilon_from_pb(text: str, what: str) -> Epsilon:
    """The epsilon of a release; a malformed one is the sender's bug, not the caller's."""
    try:
        return Epsilon.parse(text)
    except InvalidQuery as err:
        raise InternalError(f"{what} arrived with an invalid epsilon: {err.message}") from None


def release_to_pb(release: Release) -> npb.NodeRelease:
    return npb.NodeRelease(
        query_id=release.query_id,
        node=release.node,
        dataset=release.dataset,
        columns=_columns_to_pb(release.columns),
        rows=_rows_to_pb(release.rows),
        epsilon=str(release.epsilon),
        execution_seconds=release.execution_seconds,
        agreement=release.agreement,
        min_group_size=release.min_group_size,
        suppress_below=release.suppress_below,
    )


def release_from_pb(msg: npb.NodeRelease) -> Release:
    columns = _columns_from_pb(msg.columns)
    return Release(
        query_id=msg.query_id,
        node=msg.node,
        dataset=msg.dataset,
        columns=columns,
        rows=_rows_from_pb(msg.rows, columns),
        epsilon=epsilon_from_pb(msg.epsilon, f"the release of node {msg.node!r}"),
        execution_seconds=msg.execution_seconds,
        agreement=msg.agreement,
        min_group_size=msg.min_group_size,
        suppress_below=msg.suppress_below,
    )


def federated_to_pb(release: FederatedRelease) -> cpb.FederatedRelease:
    return cpb.FederatedRelease(
        query_id=release.query_id,
        dataset=release.dataset,
        columns=_columns_to_pb(release.columns),
        rows=_rows_to_pb(release.rows),
        epsilon=str(release.epsilon),
        contributing_nodes=list(release.contributing_nodes),
        missing=[cpb.MissingNode(node=n, reason=r) for n, r in sorted(release.missing.items())],
        partial=release.partial,
        agreement=release.agreement,
        min_group_size=release.min_group_size,
        suppress_below=release.suppress_below,
        aggregation=release.aggregation,
        delta=release.delta,
        shares=[secure_share_to_pb(SignedShare(*s)) for s in release.shares],
    )


def federated_from_pb(msg: cpb.FederatedRelease) -> FederatedRelease:
    if msg.partial != bool(msg.missing):
        raise InternalError(
            "the federated release arrived with a partial flag that contradicts its missing nodes"
        )
    columns = _columns_from_pb(msg.columns)
    return FederatedRelease(
        query_id=msg.query_id,
        dataset=msg.dataset,
        columns=columns,
        rows=_rows_from_pb(msg.rows, columns),
        epsilon=epsilon_from_pb(msg.epsilon, "the federated release"),
        contributing_nodes=tuple(msg.contributing_nodes),
        missing={m.node: m.reason for m in msg.missing},
        agreement=msg.agreement,
        min_group_size=msg.min_group_size,
        suppress_below=msg.suppress_below,
        aggregation=msg.aggregation or "independent",
        delta=msg.delta or "0",
        shares=tuple(_share_parts(secure_share_from_pb(s)) for s in msg.shares),
    )


def _share_parts(share: SignedShare) -> tuple[bytes, bytes, bytes]:
    return share.body, share.certificate, share.signature


def missing_to_pb(missing: Mapping[str, str]) -> list[cpb.MissingNode]:
    return [cpb.MissingNode(node=n, reason=r) for n, r in sorted(missing.items())]
