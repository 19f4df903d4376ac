"""The cheaper statements node.duckdb.sqlrender writes for per-person contribution bounding give exactly
what the documented window gives: ``row_number() OVER (PARTITION BY pid ORDER BY hash(<every
declared column, by name>), <every declared column but pid>) <= k`` after WHERE, then the
aggregates. The reference statement is written out here, independently of the renderer."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.engine import Engine
from accord.node.duckdb.sqlrender import render
from accord.node.plan import MeasureKind, Measurement, group_keys
from accord.query.model import (
    Aggregate,
    AggregateFunction,
    Between,
    Comparison,
    ComparisonOp,
    GroupColumn,
    Predicate,
    Query,
)
from accord.query.schema import ColumnSpec, ColumnType
from tests.unit.nodedata import dataset, pums, pums_rows, write_parquet

COUNT_STAR = Measurement(MeasureKind.COUNT, None)

CASES: list[tuple[tuple[Aggregate, ...], tuple[str, ...], Predicate | None, str]] = [
    ((Aggregate(AggregateFunction.COUNT, None, "n"),), (), None, ""),
    ((Aggregate(AggregateFunction.COUNT, None, "n"),), (), Between("age", 30, 60), "age BETWEEN 30 AND 60"),
    ((Aggregate(AggregateFunction.COUNT, None, "n"),), ("sex",), None, ""),
    (
        (Aggregate(AggregateFunction.SUM, "income", "s"), Aggregate(AggregateFunction.AVG, "age", "m")),
        (),
        Comparison("married", ComparisonOp.EQ, True),
        "married = TRUE",
    ),
    (
        (Aggregate(AggregateFunction.COUNT, "income", "c"), Aggregate(AggregateFunction.SUM, "educ", "e")),
        ("race",),
        Comparison("age", ComparisonOp.GT, 25),
        "age > 25",
    ),
]


def _reference(
    con: duckdb.DuckDBPyConnection, relation: str, q: Query, where_sql: str, k: int, declared: list[str]
) -> dict:
    read = sorted(q.columns_read | {"pid"})
    cols = ", ".join(f'"{c}"' for c in read)
    every = ", ".join(f'"{c}"' for c in sorted(declared))
    ties = ", ".join(f'"{c}"' for c in sorted(declared) if c != "pid")
    where = "pid IS NOT NULL" + (f" AND {where_sql}" if where_sql else "")
    measures = []
    for agg in q.aggregates:
        if agg.function is AggregateFunction.COUNT:
            measures.append(f'count("{agg.column}")' if agg.column else "count(*)")
        else:  # the census columns are all within their bounds (reject mode loaded them)
            measures.append(f'sum("{agg.column}")')
            if agg.function is AggregateFunction.AVG:
                measures.append(f'count("{agg.column}")')
    groups = ", ".join(f'"{g}"' for g in q.group_by)
    sql = (
        f"SELECT {groups + ', ' if groups else ''}{', '.join(measures)} FROM "
        f"(SELECT {cols} FROM {relation} WHERE {where} "
        f"QUALIFY row_number() OVER (PARTITION BY pid ORDER BY hash({every}), {ties}) <= {k})"
        + (f" GROUP BY {groups}" if groups else "")
    )
    width = len(q.group_by)
    return {tuple(r[:width]): tuple(r[width:]) for r in con.execute(sql).fetchall()}


@pytest.mark.parametrize("ranked", [True, False], ids=["load-time-ranks", "window"])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize(("aggs", "group_by", "where", "where_sql"), CASES)
def test_rewritten_bounding_equals_the_documented_window(
    ranked: bool,
    k: int,
    aggs: tuple[Aggregate, ...],
    group_by: tuple[str, ...],
    where: Predicate | None,
    where_sql: str,
) -> None:
    """Both ways the node bounds (load-time ranks joined by position, for queries without WHERE,
    or numbering rows per query) keep exactly the rows of the documented window."""
    cfg = pums(k)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert loaded.ranks is not None
    if not ranked:
        loaded = dataclasses.replace(loaded, ranks=None)
    q = Query("pums", (*(GroupColumn(g, g) for g in group_by), *aggs), group_by, where)
    sql = render(q, cfg.schema, True, loaded.relation, loaded.proven_bounds, loaded.ranks).sql
    assert ("POSITIONAL JOIN" in sql) == (ranked and where is None)
    got = Engine(con, {"pums": loaded}).execute(q, cfg.schema)
    expected = _reference(con, loaded.relation, q, where_sql, k, [c.name for c in cfg.schema.columns])
    columns = list(got.values)
    for i, key in enumerate(group_keys(q, cfg.schema)):
        want = expected.get(key)
        values = tuple(got.values[m][i] for m in columns)
        if want is None:
            assert all(v == 0 for v in values)
        else:
            assert values == pytest.approx(tuple(0 if w is None else w for w in want))


def test_counting_only_needs_no_row_numbers() -> None:
    """COUNT(*) without GROUP BY sums min(rows, k) per person: no window, the same total."""
    per_person = Counter(r["pid"] for r in pums_rows())
    cfg = pums(2)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    q = Query("pums", (Aggregate(AggregateFunction.COUNT, None, "n"),), (), None)
    sql = render(q, cfg.schema, True, loaded.relation).sql
    assert "row_number" not in sql and "LEAST" in sql
    answer = Engine(con, {"pums": loaded}).execute(q, cfg.schema)
    assert answer.values[COUNT_STAR] == (sum(min(n, 2) for n in per_person.values()),)
    grouped = Query("pums", (GroupColumn("sex", "sex"), q.outputs[0]), ("sex",), None)
    assert "row_number" in render(grouped, cfg.schema, True, loaded.relation).sql


@pytest.mark.parametrize("k", [1, 2, 10])
def test_whole_dataset_count_comes_from_the_checks_and_equals_the_query(k: int) -> None:
    """COUNT(*) of everything is the load-time count after bounding; the statement agrees."""
    per_person = Counter(r["pid"] for r in pums_rows())
    cfg = pums(k)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    expected = sum(min(n, k) for n in per_person.values())
    assert loaded.report.bounded_rows == expected
    q = Query("pums", (Aggregate(AggregateFunction.COUNT, None, "n"),), (), None)
    assert Engine(con, {"pums": loaded}).execute(q, cfg.schema).values[COUNT_STAR] == (expected,)
    rendered = render(q, cfg.schema, True, loaded.relation)
    assert con.execute(rendered.sql, list(rendered.params)).fetchall() == [(expected,)]


def test_whole_dataset_count_follows_file_changes_and_schema(tmp_path: Path) -> None:
    columns = (ColumnSpec("pid", ColumnType.INTEGER), ColumnSpec("v", ColumnType.INTEGER, 0, 10))
    path = write_parquet(tmp_path / "d.parquet", {"pid": [1, 1, 1, 2], "v": [1, 2, 3, 4]})
    cfg = dataset(path, columns, k=2)
    con = duckdb.connect()
    eng = Engine(con, {"d": load_dataset(cfg, con)})
    q = Query("d", (Aggregate(AggregateFunction.COUNT, None, "n"),), (), None)
    assert eng.execute(q, cfg.schema).values[COUNT_STAR] == (2 + 1,)
    # Another contribution limit than the one checked: computed by the statement, not the checks.
    k3 = dataclasses.replace(cfg.schema, max_rows_per_person=3)
    assert eng.execute(q, k3).values[COUNT_STAR] == (3 + 1,)
    write_parquet(path, {"pid": [1, 2, 2, 2, 3], "v": [1, 2, 3, 4, 5]})  # a new inode: a new stamp
    assert eng.execute(q, cfg.schema).values[COUNT_STAR] == (1 + 2 + 1,)
