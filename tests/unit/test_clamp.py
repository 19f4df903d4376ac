"""Clamping of summed values: the CASE form, and the shortcut that skips it when the load-time
checks proved every value within the declared bounds (node.duckdb.catalog + node.duckdb.sqlrender)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import duckdb
import pytest

from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.engine import Engine
from accord.node.duckdb.sqlrender import render
from accord.node.plan import MeasureKind, Measurement
from accord.query.model import Aggregate, AggregateFunction, Between, GroupColumn, Query
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from tests.unit.nodedata import dataset, pums, write_parquet

_CASE = "CASE WHEN"


def _sum(column: str) -> Aggregate:
    return Aggregate(AggregateFunction.SUM, column, f"s_{column}")


def _query(ds: str, *aggs: Aggregate, group_by: tuple[str, ...] = (), where: Between | None = None) -> Query:
    return Query(ds, (*(GroupColumn(g, g) for g in group_by), *aggs), group_by, where)


def _clamped(column: str, sql: str) -> bool:
    return f'{_CASE} "{column}"' in sql


def test_clamp_is_skipped_only_for_columns_the_checks_proved() -> None:
    """Property: a column's clamp is left out exactly when the load-time scan saw none of its values
    outside the declared bounds, and the answers are identical to the clamped ones."""
    cfg = pums(k=10)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)  # reject mode: loading succeeded, so every value is in bounds
    assert set(loaded.proven_bounds) == {"age", "educ", "income"}
    q = _query(
        "pums",
        _sum("income"),
        _sum("age"),
        Aggregate(AggregateFunction.AVG, "income", "m"),
        group_by=("sex",),
        where=Between("age", 20, 70),
    )
    fast_sql = render(q, cfg.schema, True, loaded.relation, loaded.proven_bounds).sql
    slow_sql = render(q, cfg.schema, True, loaded.relation).sql
    assert _CASE not in fast_sql
    assert _clamped("income", slow_sql) and _clamped("age", slow_sql)

    fast = Engine(con, {"pums": loaded}).execute(q, cfg.schema)
    slow = Engine(con, {"pums": dataclasses.replace(loaded, proven_bounds={})}).execute(q, cfg.schema)
    assert fast.groups == slow.groups
    age = Measurement(MeasureKind.SUM, "age")
    assert fast.values[age] == slow.values[age]  # integers: exactly equal
    for m in fast.values:
        assert fast.values[m] == pytest.approx(slow.values[m], rel=1e-12)


def test_clamp_mode_clamps_every_column_whatever_the_file_holds(tmp_path: Path) -> None:
    """With on_violation = "clamp" every summed column is clamped, also one whose values all lie
    within its bounds: which clamps run must not tell what the data holds (issue 10)."""
    columns = (
        ColumnSpec("pid", ColumnType.INTEGER),
        ColumnSpec("a", ColumnType.INTEGER, 0, 10),
        ColumnSpec("b", ColumnType.INTEGER, 0, 10),
    )
    path = write_parquet(tmp_path / "d.parquet", {"pid": [1, 2, 3], "a": [1, 2, 3], "b": [5, 50, -7]})
    cfg = dataset(path, columns, on_violation="clamp")
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert dict(loaded.proven_bounds) == {}
    assert loaded.report.out_of_bounds == {"b": 2}  # what the checks found: for the operator only
    q = _query("d", _sum("a"), _sum("b"))
    sql = render(q, cfg.schema, True, loaded.relation, loaded.proven_bounds).sql
    assert _clamped("a", sql) and _clamped("b", sql)
    answer = Engine(con, {"d": loaded}).execute(q, cfg.schema)
    assert answer.values[Measurement(MeasureKind.SUM, "a")] == (6,)
    assert answer.values[Measurement(MeasureKind.SUM, "b")] == (5 + 10 + 0,)


def test_clamp_is_kept_when_the_query_schema_declares_other_bounds(tmp_path: Path) -> None:
    """The proof is about the bounds that were checked; any other bounds are clamped."""
    columns = (ColumnSpec("pid", ColumnType.INTEGER), ColumnSpec("a", ColumnType.INTEGER, 0, 10))
    path = write_parquet(tmp_path / "d.parquet", {"pid": [1, 2], "a": [2, 9]})
    cfg = dataset(path, columns)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    narrower = DatasetSchema(
        "d", (ColumnSpec("pid", ColumnType.INTEGER), ColumnSpec("a", ColumnType.INTEGER, 0, 5)), "pid", 1
    )
    q = _query("d", _sum("a"))
    assert not _clamped("a", render(q, cfg.schema, False, loaded.relation, loaded.proven_bounds).sql)
    assert _clamped("a", render(q, narrower, False, loaded.relation, loaded.proven_bounds).sql)
    answer = Engine(con, {"d": loaded}).execute(q, narrower)
    assert answer.values[Measurement(MeasureKind.SUM, "a")] == (2 + 5,)


def test_clamp_mode_never_skips_a_clamp_before_or_after_a_change(tmp_path: Path) -> None:
    columns = (ColumnSpec("pid", ColumnType.INTEGER), ColumnSpec("v", ColumnType.INTEGER, 0, 10))
    path = write_parquet(tmp_path / "d.parquet", {"pid": [1, 2], "v": [3, 4]})
    cfg = dataset(path, columns, on_violation="clamp")
    con = duckdb.connect()
    eng = Engine(con, {"d": load_dataset(cfg, con)})
    q = _query("d", _sum("v"))
    assert eng.execute(q, cfg.schema).values[Measurement(MeasureKind.SUM, "v")] == (7,)
    assert "v" not in eng.dataset("d").proven_bounds

    write_parquet(path, {"pid": [1, 2, 3], "v": [3, 400, -9]})  # a new inode: a new stamp
    assert eng.execute(q, cfg.schema).values[Measurement(MeasureKind.SUM, "v")] == (3 + 10 + 0,)
    assert "v" not in eng.dataset("d").proven_bounds


def test_case_clamp_handles_null_nan_and_infinities(tmp_path: Path) -> None:
    """NULLs add nothing, NaN and +inf clamp to the upper bound, -inf to the lower one: the same as
    LEAST(GREATEST(x, lower), upper) with NULLs filtered out."""
    values = [None, math.nan, math.inf, -math.inf, -0.0, 0.25, 3.5, -2.0, None]
    lo, hi = -1.0, 2.0
    columns = (ColumnSpec("pid", ColumnType.INTEGER), ColumnSpec("x", ColumnType.FLOAT, lo, hi))
    path = write_parquet(tmp_path / "d.parquet", {"pid": list(range(len(values))), "x": values})
    cfg = dataset(path, columns, on_violation="clamp")
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert "x" not in loaded.proven_bounds
    got = Engine(con, {"d": loaded}).execute(_query("d", _sum("x")), cfg.schema)
    expected = sum(hi if math.isnan(v) else min(max(v, lo), hi) for v in values if v is not None)
    assert got.values[Measurement(MeasureKind.SUM, "x")] == (pytest.approx(expected),)
    row = con.execute(
        f"SELECT sum(LEAST(GREATEST(x, {lo}), {hi})) FILTER (WHERE x IS NOT NULL) FROM {loaded.relation}"
    ).fetchone()
    assert row is not None and row[0] == pytest.approx(expected)
