"""Load-time per-person row ranks (node.duckdb.ranks.build_ranks, used by node.duckdb.sqlrender for queries
without WHERE): the table is paired with the dataset row for row by ``POSITIONAL JOIN``, and the
answers it gives are exactly those of numbering rows per query, on files with many row groups
read by several threads, on CSV tables, with NULL person ids, after the file changes and when the
pairing cannot be trusted."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accord.node.config import DatasetConfig
from accord.node.duckdb import catalog
from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.engine import Engine
from accord.node.duckdb.ranks import build_ranks
from accord.node.duckdb.sqlrender import render
from accord.query.model import (
    Aggregate,
    AggregateFunction,
    And,
    Comparison,
    ComparisonOp,
    GroupColumn,
    InList,
    Query,
)
from accord.query.schema import ColumnSpec, ColumnType
from accord.query.sql import compile_query
from tests.unit.nodedata import dataset, write_csv, write_parquet

COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER),
    ColumnSpec("region", ColumnType.STRING, categories=("a", "b", "c", "d")),
    ColumnSpec("v", ColumnType.INTEGER, 0, 100),
    ColumnSpec("x", ColumnType.FLOAT, -5.0, 5.0),
)

QUERIES = [
    "SELECT COUNT(*) AS n FROM d",
    "SELECT COUNT(*) AS n FROM d WHERE v > 40",
    "SELECT SUM(v) AS s, AVG(x) AS m FROM d",
    "SELECT SUM(v) AS s, COUNT(x) AS c FROM d WHERE region IN ('a', 'c') AND x < 1.5",
    "SELECT region, COUNT(*) AS n FROM d GROUP BY region",
    "SELECT region, SUM(v) AS s, COUNT(x) AS c, AVG(x) AS m FROM d GROUP BY region",
    "SELECT region, SUM(x) AS s FROM d WHERE v BETWEEN 10 AND 90 GROUP BY region",
]


def _table(rows: int, seed: int, null_every: int = 0) -> dict[str, list]:
    """Persons with 1-6 rows each, rows scattered through the file; duplicated rows included."""
    rng = np.random.default_rng(seed)
    per_person = rng.integers(1, 7, size=rows)
    pids = np.repeat(np.arange(rows), per_person)[:rows]
    rng.shuffle(pids)
    v = rng.integers(0, 101, size=rows)
    v[::97] = 50  # some rows identical in every column: ties broken arbitrarily, interchangeably
    pid: list[int | None] = [int(p) for p in pids]
    if null_every:
        for i in range(0, rows, null_every):
            pid[i] = None
    return {
        "pid": pid,
        "region": [["a", "b", "c", "d"][i] for i in rng.integers(0, 4, size=rows)],
        "v": [int(a) for a in v],
        "x": [round(float(a), 3) for a in rng.uniform(-6, 6, size=rows)],  # some outside the bounds
    }


def _answers(con: duckdb.DuckDBPyConnection, loaded: catalog.LoadedDataset) -> list:
    """Every query's exact values; float sums rounded (summation order is not fixed)."""
    cfg = loaded.config
    engine = Engine(con, {"d": loaded})
    return [_rounded(v) for v in _exact(engine, cfg)]


def _rounded(values: dict) -> dict:
    return {m: tuple(round(x, 6) if isinstance(x, float) else x for x in col) for m, col in values.items()}


def _exact(engine: Engine, cfg: DatasetConfig) -> list:
    return [engine.execute(compile_query(sql, {"d": cfg.schema}), cfg.schema).values for sql in QUERIES]


@pytest.mark.parametrize("k", [1, 3])
def test_ranks_pair_with_every_row_of_a_many_row_group_file_read_by_several_threads(
    tmp_path: Path, k: int
) -> None:
    """On a file of 40 row groups read with 4 threads the pairing verifies, and every query gives
    the answer of the per-query window."""
    data = _table(60_000, seed=k, null_every=101)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table(data), path, row_group_size=1_500)
    cfg = dataset(path, COLUMNS, k=k, on_violation="clamp")
    con = duckdb.connect(config={"threads": 4})
    loaded = load_dataset(cfg, con)
    assert loaded.ranks is not None
    ranked = _answers(con, loaded)
    windowed = _answers(con, dataclasses.replace(loaded, ranks=None))
    assert ranked == windowed
    # ... and the window really bounds: no person keeps more than k rows.
    q = compile_query("SELECT COUNT(*) AS n FROM d", {"d": cfg.schema})
    per_person: dict[int, int] = {}
    for p in data["pid"]:
        if p is not None:
            per_person[p] = per_person.get(p, 0) + 1
    total = Engine(con, {"d": loaded}).execute(q, cfg.schema).values
    assert next(iter(total.values())) == (sum(min(n, k) for n in per_person.values()),)


def test_ranks_on_a_csv_table_and_column_names_that_collide(tmp_path: Path) -> None:
    """CSV datasets are ranked too (by rowid), and declared columns named like the rank table's
    own columns do not clash with them."""
    columns = (*COLUMNS, ColumnSpec("accord_rank", ColumnType.INTEGER, 0, 9))
    data = _table(3_000, seed=7, null_every=53)
    header = [*data, "accord_rank"]
    rows = [[data[c][i] for c in data] + [i % 10] for i in range(3_000)]
    cfg = dataset(write_csv(tmp_path / "d.csv", header, rows), columns, k=2, on_violation="clamp")
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert loaded.ranks is not None and loaded.ranks.rank != '"accord_rank"'
    assert _answers(con, loaded) == _answers(con, dataclasses.replace(loaded, ranks=None))
    q = Query("d", (Aggregate(AggregateFunction.SUM, "accord_rank", "s"),), (), None)
    sql = render(q, cfg.schema, True, loaded.relation, loaded.proven_bounds, loaded.ranks).sql
    assert "POSITIONAL JOIN" in sql


def test_a_pairing_that_does_not_line_up_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """If the ranks were put in another order than the dataset's, the load-time verification
    notices, no rank table is left behind, and queries number rows per query instead."""
    path = write_parquet(tmp_path / "d.parquet", _table(5_000, seed=3))
    cfg = dataset(path, COLUMNS, k=2, on_violation="clamp")
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert loaded.ranks is not None
    before = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    # Positions permuted (7919 is prime to 5000): every row's rank lands on another row.
    shuffled = (
        "(SELECT pid, region, v, x, (file_row_number * 7919) % 5000 AS {pos} "
        f"FROM read_parquet('{path}', file_row_number = true))"
    )
    with caplog.at_level(logging.WARNING, logger="node.duckdb.ranks"):
        got = build_ranks(cfg, con, loaded.relation, shuffled, 5_000, 1, "dataset 'd'")
    assert got is None
    assert "did not line up" in caplog.text
    after = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert after == before


def test_ranks_follow_file_changes_and_only_serve_their_own_limit(tmp_path: Path) -> None:
    """A changed file gets new ranks (the old table is dropped); a query under another contribution
    limit than the ranks were built for numbers rows itself."""
    path = write_parquet(tmp_path / "d.parquet", _table(4_000, seed=11))
    cfg = dataset(path, COLUMNS, k=2, on_violation="clamp")
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert loaded.ranks is not None
    engine = Engine(con, {"d": loaded})
    q = Query(
        "d",
        (GroupColumn("region", "region"), Aggregate(AggregateFunction.SUM, "v", "s")),
        ("region",),
        And((Comparison("v", ComparisonOp.GE, 20), InList("region", ("a", "b", "c")))),
    )
    engine.execute(q, cfg.schema)
    write_parquet(path, _table(4_500, seed=12))
    fresh_answer = engine.execute(q, cfg.schema)
    fresh = engine.dataset("d")
    assert fresh.ranks is not None and fresh.ranks.table != loaded.ranks.table
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert loaded.ranks.table.strip('"') not in tables and fresh.ranks.table.strip('"') in tables
    windowed = Engine(con, {"d": dataclasses.replace(fresh, ranks=None)}).execute(q, cfg.schema)
    assert _rounded(fresh_answer.values) == _rounded(windowed.values)
    k3 = dataclasses.replace(cfg.schema, max_rows_per_person=3)
    whole = dataclasses.replace(q, where=None)
    assert "POSITIONAL JOIN" in render(whole, cfg.schema, True, fresh.relation, None, fresh.ranks).sql
    sql = render(whole, k3, True, fresh.relation, fresh.proven_bounds, fresh.ranks).sql
    assert "POSITIONAL JOIN" not in sql and "row_number" in sql
    assert engine.execute(whole, k3) == Engine(con, {"d": dataclasses.replace(fresh, ranks=None)}).execute(
        whole, k3
    )


def test_ranks_even_when_nobody_has_extra_rows(tmp_path: Path) -> None:
    """Ranks are built for every dataset, also one where nobody has more than k rows: whether
    they exist must not depend on the data (it picks the statement, and so the running time)."""
    path = write_parquet(
        tmp_path / "d.parquet",
        {"pid": [1, 2, 3], "region": ["a", "b", "c"], "v": [1, 2, 3], "x": [0.0, 1.0, 2.0]},
    )
    con = duckdb.connect()
    loaded = load_dataset(dataset(path, COLUMNS, k=1), con)
    assert loaded.report.persons_over_limit == 0 and loaded.ranks is not None
