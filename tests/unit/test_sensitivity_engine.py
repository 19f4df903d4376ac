"""Property tests: the sensitivity node.dp calibrates to bounds the change the real engine produces.

Hypothesis draws small datasets (persons with 1 to k + 2 rows, values on, inside and beyond the
declared bounds, NULLs, undeclared and NULL group keys, rows without a person id), removes one
person, and runs the *same* SQL on both datasets through the node's own front end and engine
(:func:`accord.query.sql.compile_query`, :func:`node.duckdb.catalog.load_dataset`,
:class:`node.duckdb.engine.Engine`
over DuckDB files). For every measurement the L1 change of its whole group vector must be at
most :func:`node.dp.sensitivity`; nothing here re-implements bounding, clamping or grouping.

One known gap: a SUM over a FLOAT column is computed by DuckDB in floating point, and the rounding
of that sum is not part of the sensitivity, so the change can exceed it by a few ulps
(:func:`test_float_sum_rounding_can_exceed_sensitivity`, a strict xfail that records the gap).
The property test therefore allows the float sum that rounding, and nothing more: a missing clamp
or bound would exceed it by orders of magnitude.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.node import dp
from accord.node.backend import ExactAnswer
from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.engine import Engine
from accord.node.plan import MeasureKind, distinct_measurements
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.query.sql import compile_query
from tests.unit.nodedata import dataset, write_parquet

Row = tuple[str | None, str | None, int | float | None, int | float | None]  # (pid, g, x, y)

WHERES = (
    "",
    " WHERE x >= 0",
    " WHERE y IS NOT NULL AND g <> 'c'",
    " WHERE g IN ('a', 'b') OR x < -3",
    " WHERE NOT (x BETWEEN -2 AND 2)",
)
GROUPS = st.sampled_from(["a", "b", "c", "zz", None])  # "zz" is not a declared category


@st.composite
def values(draw: st.DrawFn, lower: float, upper: float, integer: bool) -> int | float | None:
    """NULL, a bound, just beyond a bound, far beyond, or anything in between."""
    if integer:
        lo, hi = int(lower), int(upper)
        pick = st.one_of(
            st.sampled_from([lo, hi, lo - 1, hi + 1, -(10**6), 10**6]),
            st.integers(lo, hi),
        )
    else:
        pick = st.one_of(
            st.sampled_from([lower, upper, -1e9, 1e9]),
            st.floats(lower, upper, allow_nan=False),
            st.floats(-1e6, 1e6, allow_nan=False),
        )
    return draw(st.one_of(st.none(), pick))


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    k = draw(st.integers(1, 3))
    lo = draw(st.integers(-30, 5))
    hi = draw(st.integers(lo, 30))
    flo, fhi = draw(st.sampled_from([(-2.5, 4.0), (0.0, 0.1), (-1000.0, -0.5), (0.0, 500000.0)]))
    persons: list[list[Row]] = []
    for p in range(draw(st.integers(1, 5))):
        rows: list[Row] = []
        for _ in range(draw(st.integers(1, k + 2))):
            x = draw(values(lo, hi, True))
            y = draw(values(flo, fhi, False))
            rows.append((f"p{p}", draw(GROUPS), x, y))
        persons.append(rows)
    orphans = [(None, draw(GROUPS), draw(values(lo, hi, True)), None) for _ in range(draw(st.integers(0, 2)))]
    return {
        "k": k,
        "bounds": (lo, hi),
        "fbounds": (flo, fhi),
        "persons": persons,
        "orphans": orphans,
        "removed": draw(st.integers(0, len(persons) - 1)),
        "where": draw(st.sampled_from(WHERES)),
        "group_by": draw(st.booleans()),
    }


def schema_for(case: dict[str, Any]) -> tuple[ColumnSpec, ...]:
    lo, hi = case["bounds"]
    flo, fhi = case["fbounds"]
    return (
        ColumnSpec("pid", ColumnType.STRING),
        ColumnSpec("g", ColumnType.STRING, categories=("a", "b", "c")),
        ColumnSpec("x", ColumnType.INTEGER, lo, hi),
        ColumnSpec("y", ColumnType.FLOAT, flo, fhi),
    )


def exact(path: Path, rows: list[Row], columns: tuple[ColumnSpec, ...], k: int, sql: str) -> ExactAnswer:
    data = {name: [r[i] for r in rows] for i, name in enumerate(("pid", "g", "x", "y"))}
    types = {"pid": pa.string(), "g": pa.string(), "x": pa.int64(), "y": pa.float64()}
    cfg = dataset(write_parquet(path, data, types), columns, k=k, on_violation="clamp")
    con = duckdb.connect()
    try:
        engine = Engine(con, {"d": load_dataset(cfg, con)})
        return engine.execute(compile_query(sql, {"d": cfg.schema}), cfg.schema)
    finally:
        con.close()


def l1(a: tuple[int | float, ...], b: tuple[int | float, ...]) -> Fraction:
    """The exact L1 distance of two engine outputs (floats compared exactly, no rounding)."""
    return sum((abs(Fraction(u) - Fraction(v)) for u, v in zip(a, b, strict=True)), Fraction(0))


SQL = "SELECT {g}COUNT(*) AS n, COUNT(x) AS nx, SUM(x) AS sx, SUM(y) AS sy, AVG(y) AS my FROM d{where}{gb}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scenario())
def test_sensitivity_bounds_engine_change(case: dict[str, Any]) -> None:
    """Property: for COUNT(*), COUNT(col), SUM of an INTEGER column (negative bounds too) and SUM of a
    FLOAT column, with and without WHERE and GROUP BY, removing any one person (whatever their
    number of rows, values or groups) changes the engine's exact group vector by at most
    ``dp.sensitivity`` in L1. This is the premise of every epsilon the node claims."""
    sql = SQL.format(
        g="g, " if case["group_by"] else "", where=case["where"], gb=" GROUP BY g" if case["group_by"] else ""
    )
    columns = schema_for(case)
    k = case["k"]
    everyone = [r for rows in case["persons"] for r in rows] + case["orphans"]
    without = [r for r in everyone if r[0] != f"p{case['removed']}"]
    with tempfile.TemporaryDirectory() as tmp:
        d = exact(Path(tmp) / "d.parquet", everyone, columns, k, sql)
        d2 = exact(Path(tmp) / "d2.parquet", without, columns, k, sql)
    schema = DatasetSchema("d", columns, "pid", k)
    query = compile_query(sql, {"d": schema})
    for m in distinct_measurements(query):
        change = l1(d.values[m], d2.values[m])
        allowed = Fraction(dp.sensitivity(m, schema))
        if m.kind is MeasureKind.SUM and m.column == "y":
            allowed += float_rounding(len(everyone), case["fbounds"])
        assert change <= allowed, (m, change, sql)


def float_rounding(rows: int, bounds: tuple[float, float]) -> Fraction:
    """Twice the worst-case error of a recursive float sum of ``rows`` values of magnitude at most
    ``max(|lower|, |upper|)``: ``(rows - 1) * u * sum|x|`` each, with ``u = 2**-53``."""
    return Fraction(2 * rows * rows, 2**53) * max(abs(Fraction(b)) for b in bounds)


@pytest.mark.xfail(strict=True, reason="float SUM rounding is not in the sensitivity (see docstring)")
def test_float_sum_rounding_can_exceed_sensitivity(tmp_path: Path) -> None:
    """Property (currently false, hence strict xfail): the float SUM the engine computes moves by
    at most the sensitivity. Counter-example: bounds [0, 0.1], k = 1, two persons with 0.1; a third
    person with 0.1 moves the sum from 0.2 to 0.30000000000000004, a change of
    0.10000000000000003 > 0.1. The excess is a rounding error (relative ~1e-15 here, growing with
    the number of rows as ~rows * 2**-53 for a naive sum), so the delivered epsilon exceeds the
    claimed one by that relative amount. When the engine sums floats exactly (or the sensitivity
    includes a rounding allowance from a public row bound) this test passes and the xfail goes."""
    columns = schema_for({"bounds": (0, 1), "fbounds": (0.0, 0.1)})
    sql = "SELECT SUM(y) AS s FROM d"
    base: list[Row] = [("p1", "a", 0, 0.1), ("p2", "a", 0, 0.1)]
    d = exact(tmp_path / "d.parquet", base, columns, 1, sql)
    d2 = exact(tmp_path / "d2.parquet", [*base, ("p3", "a", 0, 0.1)], columns, 1, sql)
    (m,) = d.values
    schema = DatasetSchema("d", columns, "pid", 1)
    assert l1(d.values[m], d2.values[m]) <= Fraction(dp.sensitivity(m, schema))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sensitivity_is_reached_by_the_engine(tmp_path: Path, k: int) -> None:
    """Property: the sensitivity is tight, not just an upper bound: one person with k + 2 rows, each
    beyond the bound of largest magnitude and each in a different group, changes COUNT by exactly k
    and SUM by exactly ``k * max(|lower|, |upper|)`` (so the node adds no more noise than needed, and
    the audits in tests/statistical run on truly worst-case neighbours)."""
    case = {"bounds": (-20, 10), "fbounds": (-2.5, 4.0)}
    columns = schema_for(case)
    base: list[Row] = [("q", "a", 1, 1.0)]
    person: list[Row] = [("p", g, -(10**6), 9.0) for g in ("a", "b", "c", "a", "b")[: k + 2]]
    sql = SQL.format(g="g, ", where="", gb=" GROUP BY g")
    d = exact(tmp_path / "d.parquet", base + person, columns, k, sql)
    d2 = exact(tmp_path / "d2.parquet", base, columns, k, sql)
    schema = DatasetSchema("d", columns, "pid", k)
    for m in distinct_measurements(compile_query(sql, {"d": schema})):
        expected = k if m.kind is MeasureKind.COUNT else k * (20 if m.column == "x" else 4)
        assert l1(d.values[m], d2.values[m]) == expected == dp.sensitivity(m, schema), m
