"""Edge cases of the query language, the release size, sums near the limits, huge noise scales and
text that came from elsewhere (issue 10): each is decided from the query and public metadata, before
anything runs, or made harmless where it is printed."""

from __future__ import annotations

import io
import itertools
import logging
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.cli import LOG_FORMAT, EscapingFormatter
from accord.coordinator import intervals
from accord.coordinator.combine import combine, combine_estimates
from accord.coordinator.table import format_release
from accord.errors import InvalidQuery, printable
from accord.protos import convert
from accord.query._sql_limits import FLOAT_SUM_LIMIT, INT_SUM_LIMIT, KEY_BYTES
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, GroupColumn
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
from accord.query.sql import MAX_GROUPS, MAX_RELEASE_BYTES, compile_query, parse, release_size_bound
from accord.rpc.transport import MAX_MESSAGE_BYTES

# ---- GROUP BY shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "field", "words"),
    [
        ("SELECT COUNT(*) FROM d GROUP BY g", "group_by", ["GROUP BY g", "not selected", "SELECT g"]),
        ("SELECT g, COUNT(*) FROM d GROUP BY g, h", "group_by", ["h", "not selected"]),
        ("SELECT g, g AS g2, COUNT(*) FROM d GROUP BY g", "select", ["g", "more than once"]),
        ("SELECT g AS a, COUNT(*), g AS b FROM d GROUP BY g", "select", ["g", "more than once"]),
    ],
)
def test_group_shapes_that_cannot_be_answered_are_refused_at_parse(
    sql: str, field: str, words: list[str]
) -> None:
    """Property: a GROUP BY column that is not selected, or a group column selected twice, is refused
    by the parser (so by the coordinator before any node is asked), saying what to write."""
    with pytest.raises(InvalidQuery) as info:
        parse(sql)
    for word in words:
        assert word in info.value.message
    assert field in {v.field for v in info.value.violations}


def test_group_keys_follow_the_select_order() -> None:
    """Property: GROUP BY may list the selected group columns in any order; the parsed query (and so
    every released key) follows the SELECT order, so each key value sits under its own column."""
    q = parse("SELECT h AS first, COUNT(*), g FROM d GROUP BY g, h")
    assert q.group_by == ("h", "g")
    assert [o.column for o in q.outputs if isinstance(o, GroupColumn)] == ["h", "g"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) AS nodes FROM d",
        "SELECT COUNT(*) AS suppressed FROM d",
        "SELECT COUNT(*) AS n, SUM(x) AS n_ci_low FROM d",
        "SELECT g AS count_noise_scale, COUNT(*) FROM d GROUP BY g",
    ],
)
def test_names_that_would_collide_in_the_flat_answer_are_refused(sql: str) -> None:
    """Property: an alias that equals another column of the flat answer (an aggregate's interval or
    noise-scale column, ``nodes``, ``suppressed``) is refused at parse; it used to be answered and
    one value silently overwrote the other in CSV, JSON and Arrow."""
    with pytest.raises(InvalidQuery, match="would collide in the answer"):
        parse(sql)


# ---- release size --------------------------------------------------------------------------------


def _schema(*columns: ColumnSpec, max_rows: int = 10**9, k: int = 1) -> DatasetSchema:
    return DatasetSchema("d", (ColumnSpec("pid", ColumnType.INTEGER), *columns), "pid", k, max_rows=max_rows)


def _worst_estimate(integral: bool) -> Estimate:
    # every double non-zero (proto3 leaves zeros out) and a non-default mechanism
    mechanism = Mechanism.DISCRETE_LAPLACE if integral else Mechanism.LAPLACE
    return Estimate(-1.2345e300, 9.87e299, -3.3e300, 1.1e300, mechanism)


def _worst_release(sql: str, schema: DatasetSchema) -> Release:
    """The largest release of ``sql`` the wire could carry: every group, every number present."""
    query = compile_query(sql, {"d": schema})
    lists = [spec.categories or () for spec in (schema.column(c) for c in query.group_by) if spec is not None]
    keys = list(itertools.product(*lists))
    cells = []
    for a in query.aggregates:
        e = _worst_estimate(a.function is AggregateFunction.COUNT)
        ratio = Estimate(1e300, 0.0, -1e300, 2e300, Mechanism.RATIO)
        cells.append(Cell(ratio, e, e) if a.function is AggregateFunction.AVG else Cell(e))
    rows = tuple(ReleaseRow(tuple(k), tuple(cells), support=_worst_estimate(True)) for k in keys)
    columns = tuple(
        ReleaseColumn(o.alias, None, o.column)
        if isinstance(o, GroupColumn)
        else ReleaseColumn(o.alias, o.function, o.column)
        for o in query.outputs
    )
    return Release(
        "q" * 128, "node-" + "n" * 60, "d", columns, rows, Epsilon(Fraction(1, 3)), 1.5, "a" * 64, 10, 40
    )


CATEGORY_SETS = {
    "small ints": tuple(range(5)),
    "64-bit ints": tuple(-(2**63) + i for i in range(7)),
    "floats": (0.1, -1e300, 2.5),
    "booleans": (True, False),
    "long text": tuple(f"é{i}" * 40 for i in range(6)),
    "emoji": ("🙂", "a\nb", ""),
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(CATEGORY_SETS)), min_size=0, max_size=3, unique=True),
    st.lists(
        st.sampled_from(["COUNT(*)", "COUNT(x)", "SUM(x)", "AVG(x)", "SUM(n)", "AVG(n)"]),
        min_size=1,
        max_size=5,
    ),
)
def test_release_size_bound_is_an_upper_bound_on_the_wire(groups: list[str], aggregates: list[str]) -> None:
    """Property: for any query shape and category lists (long strings, 64-bit integers, floats),
    the bound computed from public metadata is at least the encoded size of the rows of the
    largest release (every number present, support included), for the node's and the combined
    message alike."""
    types = {"small ints": ColumnType.INTEGER, "64-bit ints": ColumnType.INTEGER, "floats": ColumnType.FLOAT}
    types |= {"booleans": ColumnType.BOOLEAN, "long text": ColumnType.STRING, "emoji": ColumnType.STRING}
    cols = [ColumnSpec(f"g{i}", types[name], categories=CATEGORY_SETS[name]) for i, name in enumerate(groups)]
    schema = _schema(
        *cols, ColumnSpec("x", ColumnType.FLOAT, -1.0, 1.0), ColumnSpec("n", ColumnType.INTEGER, 0, 9)
    )
    select = [f"g{i}" for i in range(len(groups))] + [f"{a} AS a{i}" for i, a in enumerate(aggregates)]
    sql = f"SELECT {', '.join(select)} FROM d" + (
        f" GROUP BY {', '.join(f'g{i}' for i in range(len(groups)))}" if groups else ""
    )
    release = _worst_release(sql, schema)
    bound = release_size_bound(compile_query(sql, {"d": schema}), schema)
    node_rows = sum(len(r.SerializeToString()) + 5 for r in convert.release_to_pb(release).rows)
    assert node_rows <= bound
    federated = combine(release.query_id, {release.node: release}, {})
    fed_rows = sum(len(r.SerializeToString()) + 5 for r in convert.federated_to_pb(federated).rows)
    assert fed_rows <= bound


def test_the_largest_release_the_limits_allow_fits_one_message() -> None:
    """Property: at MAX_GROUPS (derived from MAX_RELEASE_BYTES) the release of one group column with a
    count, its support and worst-case 64-bit keys fits the RPC message limit, as the node sends it
    and as the coordinator does; MAX_RELEASE_BYTES leaves room for the release's other fields."""
    assert MAX_RELEASE_BYTES + 512 * 1024 <= MAX_MESSAGE_BYTES
    schema = _schema(
        ColumnSpec("g", ColumnType.INTEGER, categories=tuple(-(2**63) + i for i in range(MAX_GROUPS)))
    )
    sql = "SELECT g, COUNT(*) FROM d GROUP BY g"
    assert release_size_bound(compile_query(sql, {"d": schema}), schema) <= MAX_RELEASE_BYTES
    release = _worst_release(sql, schema)
    assert len(convert.release_to_pb(release).SerializeToString()) < MAX_MESSAGE_BYTES
    federated = combine(release.query_id, {release.node: release}, {})
    assert len(convert.federated_to_pb(federated).SerializeToString()) < MAX_MESSAGE_BYTES


def test_a_release_beyond_the_limit_is_refused_from_metadata() -> None:
    """Property: more groups than MAX_GROUPS, or fewer groups with more numbers each than fit, or
    long category values, are refused by validation (no data read), naming what to change."""
    many = _schema(ColumnSpec("g", ColumnType.INTEGER, categories=tuple(range(MAX_GROUPS + 1))))
    with pytest.raises(InvalidQuery, match="groups; the limit is"):
        compile_query("SELECT g, COUNT(*) FROM d GROUP BY g", {"d": many})
    wide = _schema(
        ColumnSpec("g", ColumnType.INTEGER, categories=tuple(range(MAX_GROUPS // 2))),
        ColumnSpec("x", ColumnType.FLOAT, 0.0, 1.0),
    )
    compile_query("SELECT g, COUNT(*) FROM d GROUP BY g", {"d": wide})
    with pytest.raises(InvalidQuery, match="would not fit one answer"):
        compile_query("SELECT g, AVG(x), SUM(x), COUNT(*) FROM d GROUP BY g", {"d": wide})
    text = _schema(
        ColumnSpec("g", ColumnType.STRING, categories=tuple(f"{i:0{KEY_BYTES * 40}d}" for i in range(5000)))
    )
    with pytest.raises(InvalidQuery, match="would not fit one answer"):
        compile_query("SELECT g, COUNT(*) FROM d GROUP BY g", {"d": text})


# ---- sums that could overflow ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "max_rows", "ok"),
    [
        (ColumnSpec("v", ColumnType.INTEGER, 0, 2**62 - 1), 1, True),
        (ColumnSpec("v", ColumnType.INTEGER, 0, 2**61), 2, True),
        (ColumnSpec("v", ColumnType.INTEGER, 0, 2**61), 3, False),
        (ColumnSpec("v", ColumnType.INTEGER, -(2**62) + 5, 0), 10**9, False),
        (ColumnSpec("v", ColumnType.INTEGER, 0, 4_000_000_000), 10**9, True),
        (ColumnSpec("v", ColumnType.FLOAT, 0.0, 1e308), 1, False),
        (ColumnSpec("v", ColumnType.FLOAT, -1e140, 1e140), 10**9, True),
        (ColumnSpec("v", ColumnType.FLOAT, -1e142, 0.0), 10**9, False),
    ],
)
def test_sums_that_could_overflow_are_refused_from_the_declaration(
    spec: ColumnSpec, max_rows: int, ok: bool
) -> None:
    """Property: SUM and AVG are answered only when max_rows times the largest bound stays within
    2^62 (integers) or 1e150 (floats); otherwise both are refused before execution with a message
    naming the bounds, max_rows and the node config."""
    schema = _schema(spec, max_rows=max_rows)
    for fn in ("SUM", "AVG"):
        sql = f"SELECT {fn}(v) FROM d"
        if ok:
            compile_query(sql, {"d": schema})
            continue
        with pytest.raises(InvalidQuery) as info:
            compile_query(sql, {"d": schema})
        message = info.value.message
        assert f"{fn}(v)" in message and "max_rows" in message and "node config" in message
    assert INT_SUM_LIMIT == 2**62 and FLOAT_SUM_LIMIT == 1e150


def test_max_rows_per_person_counts_when_above_max_rows() -> None:
    """Property: the sensitivity k * bound is held to the same limit (k above max_rows)."""
    schema = _schema(ColumnSpec("v", ColumnType.INTEGER, 0, 2**61), max_rows=1, k=4)
    with pytest.raises(InvalidQuery, match="max_rows"):
        compile_query("SELECT SUM(v) FROM d", {"d": schema})


# ---- huge noise scales at the coordinator ------------------------------------------------------


@pytest.mark.parametrize("scale", [1e7, 1e16, 1e17, 4.6e121, 1e253, 1e300])
@pytest.mark.parametrize("mechanism", [Mechanism.DISCRETE_LAPLACE, Mechanism.LAPLACE])
@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_huge_noise_scales_combine_without_crashing(scale: float, mechanism: Mechanism, nodes: int) -> None:
    """Property: a noise scale far beyond any useful one (a tiny epsilon on a wide bound) still
    combines to a finite interval at least as wide as a single Laplace's 95% interval (no
    ZeroDivisionError, overflow or NaN)."""
    parts = [Estimate(1e10, scale, 0.0, 0.0, mechanism)] * nodes
    combined = combine_estimates(parts)
    h = combined.ci_high - combined.value
    assert math.isfinite(h) and math.isfinite(combined.noise_scale)
    assert h >= scale * math.log(20) * (1 - 1e-9)
    assert combined.noise_scale == pytest.approx(scale * math.sqrt(nodes))


def test_discrete_half_width_is_continuous_across_the_closed_form_switch() -> None:
    """Property: above 1e6 the discrete half-width comes from its closed form; it agrees with the
    exact stepping just below the switch to within one, and is never below the exact answer."""
    below = intervals.single_discrete_half_width(999_999.0)
    above = intervals.single_discrete_half_width(1_000_001.0)
    assert 0 < above - below <= 7  # 2 * ln 20 ~ 6 per 2 units of scale, plus the margin of one
    t = math.exp(-1 / 1e17)
    h = intervals.single_discrete_half_width(1e17)
    assert 2 * math.exp(-(h + 1) / 1e17) / (1 + t) <= 0.05


# ---- text from elsewhere ----------------------------------------------------------------------


def test_printable_escapes_every_control_and_format_character() -> None:
    """Property: newlines, carriage returns, ESC, DEL, C1 controls and bidi overrides are escaped;
    printable text (accents, emoji, spaces) is left alone."""
    assert printable("a\nb\r\x1b[31m\x7f\x85\u202e\u2028") == "a\\nb\\r\\x1b[31m\\x7f\\x85\\u202e\\u2028"
    assert printable("Saint-Étienne 🙂 ok") == "Saint-Étienne 🙂 ok"
    assert printable("x\ny", keep="\n") == "x\ny"


def test_log_lines_cannot_be_forged() -> None:
    """Property: the command line's log format writes one line per record whatever the message's
    arguments hold (a query id, SQL or a node's error text with a newline or an escape sequence)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logger = logging.getLogger("accord.test_forgery")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "node %s did not answer query %s", "county", "q1\n2026-12-03 INFO accord: FORGED\x1b[2J"
        )
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert (
        len(lines) == 1
        and "\x1b" not in lines[0]
        and "q1\\n2026-12-03 INFO accord: FORGED\\x1b[2J" in lines[0]
    )


def _federated(group_value: str, node: str = "county", reason: str = "") -> FederatedRelease:
    e = Estimate(3.0, 1.0, 1.0, 5.0, Mechanism.DISCRETE_LAPLACE)
    return FederatedRelease(
        "q1",
        "d",
        (ReleaseColumn("g\x1b[1m", None, "g"), ReleaseColumn("n", AggregateFunction.COUNT, None)),
        (ReleaseRow((group_value,), (Cell(e),)),),
        Epsilon(Fraction(1)),
        (node,),
        {"other\nnode": reason} if reason else {},
        "agr\reement",
    )


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_terminal_output_escapes_what_came_from_the_network(fmt: str) -> None:
    """Property: a category value, a column name, a node name, an agreement or a missing node's
    reason holding ESC, CR or a newline reaches the analyst's terminal escaped, in every format:
    no control character is printed and every row stays one line."""
    release = _federated("Sid\x1b]0;pwned\x07\r\nFAKE ROW", "county\x1b[31m", "down\x1b[2J\n")
    text = format_release(release, fmt)  # type: ignore[arg-type]
    assert not any(ch in text for ch in "\x1b\r\x07")
    lines = text.splitlines()
    assert not any(line.startswith("FAKE ROW") for line in lines)
    if fmt == "table":
        assert "Sid\\x1b]0;pwned\\x07\\r\\nFAKE ROW" in text and "county\\x1b[31m" in text
    if fmt == "csv":
        assert len(lines) == 2
