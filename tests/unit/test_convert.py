"""accord.protos.convert: the model ⇄ protobuf edge. Everything that goes out comes back equal (and exact),
and anything malformed that comes in becomes a typed Accord error, never a raw exception."""

from __future__ import annotations

import contextlib
import math
import struct
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import AccordError, InternalError, Unauthenticated
from accord.policies.signing import SignedQuery
from accord.protos import convert
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
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema

# Protobuf strings are UTF-8: lone surrogates cannot be encoded, so they are not valid text at all.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
LITERAL: st.SearchStrategy[Literal] = st.one_of(
    st.none(), st.booleans(), INT64, st.floats(allow_nan=False), TEXT
)
EPSILON = st.fractions(min_value=Fraction(1, 10**6), max_value=100, max_denominator=10**6).map(Epsilon)


def wire(msg: Any) -> Any:
    """Serialize and parse again, as the message would arrive from another process."""
    return type(msg).FromString(msg.SerializeToString())


def same_literal(a: Literal, b: Literal) -> bool:
    """Equal value *and* type (True == 1 == 1.0 in Python, but not on the wire); floats bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


# ---- signed queries ------------------------------------------------------------------------


@given(st.binary(min_size=1), st.binary(min_size=1), st.binary(min_size=1))
def test_signed_query_travels_byte_for_byte(payload: bytes, signature: bytes, certificate: bytes) -> None:
    """Property: the three byte strings of a signed query come out of the wire exactly as they
    went in (nothing is decoded or re-encoded on the way)."""
    signed = SignedQuery(payload, signature, certificate)
    assert convert.signed_query_from_pb(wire(convert.signed_query_to_pb(signed))) == signed


@pytest.mark.parametrize("missing", ["payload", "signature", "certificate"])
def test_unsigned_request_is_unauthenticated(missing: str) -> None:
    """Property: a request without its payload, signature or certificate is refused as not signed."""
    parts = {"payload": b"p", "signature": b"s", "certificate": b"c"}
    parts[missing] = b""
    with pytest.raises(Unauthenticated) as info:
        convert.signed_query_from_pb(wire(pb.SignedQuery(**parts)))
    assert info.value.reason == "QUERY_NOT_SIGNED"


# ---- literals ------------------------------------------------------------------------------


@given(LITERAL)
def test_value_round_trip_keeps_value_and_type(value: Literal) -> None:
    """Property: None, bool, int (64-bit), float (incl. ±inf, -0.0) and str come back equal and of
    the same type; in particular True does not become 1 and 1 does not become 1.0."""
    back = convert.value_from_pb(wire(convert.value_to_pb(value)))
    assert same_literal(back, value), (value, back)


@pytest.mark.parametrize(
    "value", [None, False, True, 0, -1, 2**63 - 1, -(2**63), 0.0, -0.0, math.inf, "", "x"]
)
def test_value_defaults_are_not_confused_with_unset(value: Literal) -> None:
    """Property: proto3 default values (0, False, "", 0.0) still say which kind they are."""
    msg = wire(convert.value_to_pb(value))
    assert msg.WhichOneof("kind") is not None
    assert same_literal(convert.value_from_pb(msg), value)


def test_nan_value_survives() -> None:
    """Property: a NaN literal comes back as a float NaN."""
    back = convert.value_from_pb(wire(convert.value_to_pb(math.nan)))
    assert isinstance(back, float) and math.isnan(back)


def test_unset_value_is_a_typed_error() -> None:
    """Property: a Value with no kind set (not even null_value) is malformed and raises
    InternalError (the sender's bug) instead of silently becoming NULL."""
    with pytest.raises(InternalError, match="none of its kinds"):
        convert.value_from_pb(wire(pb.Value()))


def test_unsupported_literal_type_is_a_typed_error() -> None:
    """Property: putting something that is not a Literal on the wire is an InternalError."""
    with pytest.raises(InternalError, match="bytes"):
        convert.value_to_pb(b"raw")  # type: ignore[arg-type]


# ---- dataset schemas -----------------------------------------------------------------------

# Integer bounds travel as doubles: only integers up to 2**53 are exact (see the report).
EXACT_INT = st.integers(min_value=-(2**53), max_value=2**53)


@st.composite
def column_specs(draw: st.DrawFn, name: str) -> ColumnSpec:
    ctype = draw(st.sampled_from(ColumnType))
    lower: int | float | None = None
    upper: int | float | None = None
    if ctype.numeric and draw(st.booleans()):
        bound = EXACT_INT if ctype is ColumnType.INTEGER else FINITE
        a, b = sorted([draw(bound), draw(bound)])
        lower, upper = a, b
    categories: tuple[Literal, ...] | None = None
    if draw(st.booleans()):
        element: st.SearchStrategy[Any] = {
            ColumnType.INTEGER: INT64,
            ColumnType.FLOAT: FINITE.map(lambda f: f + 0.0),  # no -0.0: it equals 0.0 in a set
            ColumnType.BOOLEAN: st.booleans(),
            ColumnType.STRING: TEXT,
        }[ctype]
        categories = tuple(draw(st.lists(element, min_size=1, max_size=5, unique=True)))
    return ColumnSpec(name, ctype, lower, upper, categories, draw(TEXT))


@st.composite
def schemas(draw: st.DrawFn) -> DatasetSchema:
    names = draw(st.lists(NAME, min_size=1, max_size=5, unique=True))
    columns = tuple(draw(column_specs(n)) for n in names)
    return DatasetSchema(
        name=draw(NAME),
        columns=columns,
        privacy_unit=draw(st.sampled_from(names)),
        max_rows_per_person=draw(st.integers(1, 1000)),
        description=draw(TEXT),
    )


def same_schema(a: DatasetSchema, b: DatasetSchema) -> bool:
    if (a.name, a.privacy_unit, a.max_rows_per_person, a.description) != (
        b.name,
        b.privacy_unit,
        b.max_rows_per_person,
        b.description,
    ):
        return False
    for x, y in zip(a.columns, b.columns, strict=True):
        if (x.name, x.type, x.description, x.lower, x.upper) != (
            y.name,
            y.type,
            y.description,
            y.lower,
            y.upper,
        ):
            return False
        if type(x.lower) is not type(y.lower) or type(x.upper) is not type(y.upper):
            return False
        if (x.categories is None) != (y.categories is None):
            return False
        if x.categories is not None and y.categories is not None:
            if len(x.categories) != len(y.categories):
                return False
            if not all(same_literal(p, q) for p, q in zip(x.categories, y.categories, strict=True)):
                return False
    return True


@given(schemas())
def test_schema_round_trip(schema: DatasetSchema) -> None:
    """Property: a dataset schema (types, bounds with their int/float type, public category lists
    in order, descriptions, privacy unit, contribution limit) survives the wire unchanged."""
    back = convert.schema_from_pb(wire(convert.schema_to_pb(schema)))
    assert back == schema
    assert same_schema(back, schema)


def test_concrete_schema_round_trip() -> None:
    """Property: a typical schema, including an integer column with bounds and categories and a
    column without either, keeps every detail (an unbounded column stays unbounded, not [0, 0])."""
    schema = DatasetSchema(
        name="citizens",
        columns=(
            ColumnSpec("person_id", ColumnType.STRING),
            ColumnSpec("age", ColumnType.INTEGER, 0, 100, description="years"),
            ColumnSpec("educ", ColumnType.INTEGER, 1, 16, categories=tuple(range(1, 17))),
            ColumnSpec("income", ColumnType.FLOAT, 0.0, 250_000.5),
            ColumnSpec("district", ColumnType.STRING, categories=("Northbrook", "Southdale")),
            ColumnSpec("married", ColumnType.BOOLEAN, categories=(True, False)),
            ColumnSpec("zero", ColumnType.INTEGER, 0, 0),
        ),
        privacy_unit="person_id",
        max_rows_per_person=3,
        description="people",
    )
    back = convert.schema_from_pb(wire(convert.schema_to_pb(schema)))
    assert back == schema
    assert same_schema(back, schema)
    node, schemas_back = convert.catalog_from_pb(wire(convert.catalog_to_pb("county", [schema, schema])))
    assert node == "county" and schemas_back == (schema, schema)


def _column(**kw: Any) -> pb.ColumnSpec:
    base: dict[str, Any] = {"name": "c", "type": pb.INTEGER}
    base.update(kw)
    return pb.ColumnSpec(**base)


def _schema_msg(*columns: pb.ColumnSpec, **kw: Any) -> pb.DatasetSchema:
    base: dict[str, Any] = {
        "name": "ds",
        "privacy_unit": "pid",
        "max_rows_per_person": 1,
        "columns": [pb.ColumnSpec(name="pid", type=pb.STRING), *columns],
    }
    base.update(kw)
    return pb.DatasetSchema(**base)


@pytest.mark.parametrize(
    ("msg", "says"),
    [
        (_schema_msg(_column(type=pb.COLUMN_TYPE_UNSPECIFIED)), "unknown type"),
        (_schema_msg(_column(type=99)), "unknown type"),
        (_schema_msg(_column(bounded=True, lower=5, upper=1)), "above upper bound"),
        (_schema_msg(_column(bounded=True, lower=0.5, upper=1)), "non-integer bounds"),
        (_schema_msg(_column(bounded=True, lower=-math.inf, upper=1)), "non-integer bounds"),
        (_schema_msg(_column(bounded=True, lower=math.nan, upper=1)), "non-integer bounds"),
        (_schema_msg(_column(type=pb.FLOAT, bounded=True, lower=math.nan, upper=1)), "above upper bound"),
        (_schema_msg(_column(type=pb.STRING, bounded=True, lower=0, upper=1)), "bounds only apply"),
        (_schema_msg(_column(has_categories=True)), "categories is empty"),
        (_schema_msg(_column(has_categories=True, categories=[pb.Value()])), "none of its kinds"),
        (
            _schema_msg(_column(has_categories=True, categories=[pb.Value(int_value=1)] * 2)),
            "a value twice",
        ),
        (_schema_msg(max_rows_per_person=0), "max_rows_per_person"),
        (_schema_msg(privacy_unit="nobody"), "privacy_unit"),
        (_schema_msg(_column(name="pid")), "declared twice"),
    ],
    ids=[
        "type-unspecified",
        "type-unknown",
        "lower-above-upper",
        "fractional-int-bound",
        "infinite-int-bound",
        "nan-int-bound",
        "nan-float-bound",
        "bounded-string",
        "empty-categories",
        "unset-category",
        "duplicate-category",
        "zero-rows-per-person",
        "unknown-privacy-unit",
        "duplicate-column",
    ],
)
def test_malformed_schema_is_a_typed_error(msg: pb.DatasetSchema, says: str) -> None:
    """Property: a schema no node could have loaded arrives as InternalError (the sender's bug)
    with a message saying what is wrong; never a raw ValueError/OverflowError."""
    with pytest.raises(InternalError) as info:
        convert.schema_from_pb(wire(msg))
    assert says in info.value.message


# ---- releases ------------------------------------------------------------------------------

MECHANISM = st.sampled_from(Mechanism)
ESTIMATE = st.builds(
    Estimate,
    value=st.floats(allow_nan=False),
    noise_scale=st.floats(min_value=0, allow_nan=False),
    ci_low=st.floats(allow_nan=False),
    ci_high=st.floats(allow_nan=False),
    mechanism=MECHANISM,
)
CELL = st.builds(Cell, estimate=ESTIMATE, sum=st.none() | ESTIMATE, count=st.none() | ESTIMATE)
AGG_COLUMN = st.builds(
    ReleaseColumn, name=NAME, function=st.sampled_from(AggregateFunction), column=st.none() | NAME
)
GROUP_COLUMN = st.builds(ReleaseColumn, name=NAME, function=st.none(), column=st.none() | NAME)


@st.composite
def release_shapes(draw: st.DrawFn) -> tuple[tuple[ReleaseColumn, ...], tuple[ReleaseRow, ...]]:
    groups = draw(st.lists(GROUP_COLUMN, max_size=3))
    aggregates = draw(st.lists(AGG_COLUMN, min_size=1, max_size=3))
    columns = tuple(draw(st.permutations([*groups, *aggregates])))
    rows = draw(
        st.lists(
            st.builds(
                ReleaseRow,
                group=st.tuples(*[LITERAL] * len(groups)),
                cells=st.tuples(*[CELL] * len(aggregates)),
            ),
            max_size=4,
        )
    )
    return columns, tuple(rows)


@st.composite
def releases(draw: st.DrawFn) -> Release:
    columns, rows = draw(release_shapes())
    return Release(
        query_id=draw(NAME),
        node=draw(NAME),
        dataset=draw(NAME),
        columns=columns,
        rows=rows,
        epsilon=draw(EPSILON),
        execution_seconds=draw(st.floats(min_value=0, allow_nan=False)),
    )


@st.composite
def federated_releases(draw: st.DrawFn) -> FederatedRelease:
    columns, rows = draw(release_shapes())
    return FederatedRelease(
        query_id=draw(NAME),
        dataset=draw(NAME),
        columns=columns,
        rows=rows,
        epsilon=draw(EPSILON),
        contributing_nodes=tuple(draw(st.lists(NAME, max_size=4, unique=True))),
        missing=draw(st.dictionaries(NAME, TEXT, max_size=3)),
    )


def same_rows(a: tuple[ReleaseRow, ...], b: tuple[ReleaseRow, ...]) -> bool:
    return len(a) == len(b) and all(
        len(x.group) == len(y.group)
        and all(same_literal(p, q) for p, q in zip(x.group, y.group, strict=True))
        for x, y in zip(a, b, strict=True)
    )


@given(releases())
def test_node_release_round_trip(release: Release) -> None:
    """Property: a node's release (columns, group keys with their types, every estimate with its
    noise scale, interval and mechanism, AVG's sum/count parts, exact epsilon) comes back equal."""
    back = convert.release_from_pb(wire(convert.release_to_pb(release)))
    assert back == release
    assert same_rows(back.rows, release.rows)
    assert back.epsilon == release.epsilon and isinstance(back.epsilon, Epsilon)


@given(federated_releases())
def test_federated_release_round_trip(release: FederatedRelease) -> None:
    """Property: the combined release comes back equal, including which nodes contributed and
    which were missing with their reasons, and the wire's partial flag says the same."""
    msg = wire(convert.federated_to_pb(release))
    assert msg.partial == release.partial
    back = convert.federated_from_pb(msg)
    assert back == release
    assert back.missing == release.missing and back.partial == release.partial
    assert same_rows(back.rows, release.rows)


def test_partial_federated_release_round_trip() -> None:
    """Property: a concrete partial answer (one node missing) is still partial after the wire."""
    est = Estimate(10.0, 2.0, 4.0, 16.0, Mechanism.DISCRETE_LAPLACE)
    release = FederatedRelease(
        query_id="q1",
        dataset="citizens",
        columns=(
            ReleaseColumn("district", None, None),
            ReleaseColumn("n", AggregateFunction.COUNT, None),
            ReleaseColumn("mean_income", AggregateFunction.AVG, "income"),
        ),
        rows=(
            ReleaseRow(
                ("Northbrook",),
                (Cell(est), Cell(Estimate(3.5, 0.0, 1.0, 6.0, Mechanism.RATIO), sum=est, count=est)),
            ),
        ),
        epsilon=Epsilon(Fraction(1, 3)),
        contributing_nodes=("county", "district-a"),
        missing={"district-b": "unavailable"},
    )
    msg = wire(convert.federated_to_pb(release))
    assert msg.epsilon == "1/3" and msg.partial
    assert [(m.node, m.reason) for m in msg.missing] == [("district-b", "unavailable")]
    back = convert.federated_from_pb(msg)
    assert back == release and back.partial
    assert [(m.node, m.reason) for m in convert.missing_to_pb({"b": "x", "a": "y"})] == [
        ("a", "y"),
        ("b", "x"),
    ]


def _good_release_msg() -> npb.NodeRelease:
    est = Estimate(1.0, 1.0, 0.0, 2.0, Mechanism.DISCRETE_LAPLACE)
    release = Release(
        query_id="q",
        node="county",
        dataset="citizens",
        columns=(ReleaseColumn("g", None, None), ReleaseColumn("n", AggregateFunction.COUNT, None)),
        rows=(ReleaseRow(("a",), (Cell(est),)),),
        epsilon=Epsilon(Fraction(1, 2)),
    )
    return convert.release_to_pb(release)


def _spoil(change: str) -> npb.NodeRelease:
    msg = _good_release_msg()
    if change.startswith("epsilon="):
        msg.epsilon = change.removeprefix("epsilon=")
    elif change == "nan-value":
        msg.rows[0].cells[0].estimate.value = math.nan
    elif change == "nan-ci":
        msg.rows[0].cells[0].estimate.ci_high = math.nan
    elif change == "no-mechanism":
        msg.rows[0].cells[0].estimate.mechanism = pb.MECHANISM_UNSPECIFIED
    elif change == "unknown-mechanism":
        msg.rows[0].cells[0].estimate.mechanism = 42  # type: ignore[assignment]
    elif change == "unknown-function":
        msg.columns[1].function = 42  # type: ignore[assignment]
    elif change == "unset-group-value":
        msg.rows[0].group[0].Clear()
    elif change == "extra-cell":
        msg.rows[0].cells.add().CopyFrom(msg.rows[0].cells[0])
    elif change == "missing-group-value":
        del msg.rows[0].group[:]
    else:  # pragma: no cover
        raise AssertionError(change)
    return wire(msg)


SPOILED = [
    ("epsilon=", "invalid epsilon"),
    ("epsilon=abc", "invalid epsilon"),
    ("epsilon=-1", "invalid epsilon"),
    ("epsilon=nan", "invalid epsilon"),
    ("epsilon=1e999999999", "invalid epsilon"),
    ("nan-value", "NaN"),
    ("nan-ci", "NaN"),
    ("no-mechanism", "mechanism"),
    ("unknown-mechanism", "mechanism"),
    ("unknown-function", "aggregate function"),
    ("unset-group-value", "none of its kinds"),
    ("extra-cell", "2 cell(s)"),
    ("missing-group-value", "0 group value(s)"),
]


@pytest.mark.parametrize(("change", "says"), SPOILED, ids=[c for c, _ in SPOILED])
def test_malformed_node_release_is_a_typed_error(change: str, says: str) -> None:
    """Property: a release that no honest node sends (bad epsilon, NaN, unknown enum values,
    unset oneof, rows that do not match the columns) raises InternalError with a clear message
    at the edge, instead of a raw ValueError here or a crash later while combining/printing."""
    assert convert.release_from_pb(wire(_good_release_msg())).epsilon == Epsilon(Fraction(1, 2))  # control
    with pytest.raises(InternalError) as info:
        convert.release_from_pb(_spoil(change))
    assert says in info.value.message


@pytest.mark.parametrize("epsilon", ["", "abc", "0", "nan"])
def test_malformed_federated_release_epsilon_is_a_typed_error(epsilon: str) -> None:
    """Property: the analyst's client turns a malformed epsilon in the coordinator's answer into
    InternalError, not a raw ValueError from Fraction."""
    msg = cpb.FederatedRelease(query_id="q", dataset="d", epsilon=epsilon)
    with pytest.raises(InternalError, match="epsilon"):
        convert.federated_from_pb(wire(msg))


def test_partial_flag_contradicting_missing_nodes_is_a_typed_error() -> None:
    """Property: a federated release flagged partial but naming no missing node (or the reverse)
    is refused, so an incomplete answer cannot pass as complete."""
    for msg in (
        cpb.FederatedRelease(query_id="q", dataset="d", epsilon="1", partial=True),
        cpb.FederatedRelease(
            query_id="q", dataset="d", epsilon="1", missing=[cpb.MissingNode(node="x", reason="down")]
        ),
    ):
        with pytest.raises(InternalError, match="partial"):
            convert.federated_from_pb(wire(msg))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_a_raw_exception(data: bytes) -> None:
    """Property: whatever bytes parse as a message, converting them either succeeds or raises an
    Accord error (the typed tree or InternalError), for signed queries, node releases, federated
    releases and schemas."""
    for msg_type, fn in (
        (pb.SignedQuery, convert.signed_query_from_pb),
        (npb.NodeRelease, convert.release_from_pb),
        (cpb.FederatedRelease, convert.federated_from_pb),
        (pb.DatasetSchema, convert.schema_from_pb),
    ):
        try:
            msg = msg_type.FromString(data)
        except Exception:  # not a parsable message at all: gRPC rejects it before us
            continue
        with contextlib.suppress(AccordError, InternalError):
            fn(msg)
