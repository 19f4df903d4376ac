"""Issue 10: how a node executes a query depends on its config and the query, never on the data;
and a dataset path is one literal file (DuckDB would expand a glob and read files nobody checked)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from accord.errors import ConfigError, DataError
from accord.node.config import load_node_config
from accord.node.duckdb import engine as engine_module
from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.engine import Engine
from accord.node.duckdb.sqlrender import RenderedQuery
from accord.node.plan import MeasureKind, Measurement
from accord.query.model import Aggregate, AggregateFunction, Between, GroupColumn, Query
from accord.query.schema import ColumnSpec, ColumnType
from tests.unit.nodedata import dataset, write_parquet
from tests.unit.test_config import VALID, write

COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER),
    ColumnSpec("v", ColumnType.INTEGER, 0, 10),
    ColumnSpec("g", ColumnType.STRING, categories=("a", "b")),
)
BASE = {"pid": [1, 2, 3, 4], "v": [1, 2, 3, 4], "g": ["a", "b", "a", "b"]}
NEIGHBOURS = {
    "one person added": {"pid": [1, 2, 3, 4, 5], "v": [1, 2, 3, 4, 5], "g": ["a", "b", "a", "b", "a"]},
    "one person with an extra row": {
        "pid": [1, 2, 3, 4, 4],
        "v": [1, 2, 3, 4, 6],
        "g": ["a", "b", "a", "b", "b"],
    },
    "a value out of bounds (clamp)": {"pid": [1, 2, 3, 4], "v": [1, 2, 3, 400], "g": ["a", "b", "a", "b"]},
}
QUERIES = (
    Query("d", (Aggregate(AggregateFunction.COUNT, None, "n"),), (), None),
    Query("d", (Aggregate(AggregateFunction.SUM, "v", "s"),), (), None),
    Query("d", (GroupColumn("g", "g"), Aggregate(AggregateFunction.SUM, "v", "s")), ("g",), None),
    Query("d", (Aggregate(AggregateFunction.COUNT, None, "n"),), (), Between("v", 2, 3)),
    Query(
        "d",
        (GroupColumn("g", "g"), Aggregate(AggregateFunction.SUM, "v", "s")),
        ("g",),
        Between("v", 0, 3),
    ),
)


def _statements(tmp_path: Path, data: dict[str, list[object]], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL text the engine runs for every query of :data:`QUERIES` over ``data`` (clamp mode,
    so that a value out of bounds loads), with the relation's name normalised."""
    seen: list[str] = []
    real = engine_module.render

    def spy(*args: object, **kwargs: object) -> RenderedQuery:
        rendered = real(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(rendered.sql)
        return rendered

    monkeypatch.setattr(engine_module, "render", spy)
    folder = tmp_path / str(len(list(tmp_path.iterdir())))
    folder.mkdir()
    cfg = dataset(write_parquet(folder / "d.parquet", data), COLUMNS, k=1, on_violation="clamp")
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    eng = Engine(con, {"d": loaded})
    for q in QUERIES:
        eng.execute(q, cfg.schema)
    assert loaded.ranks is not None
    return [s.replace(loaded.ranks.table, "<ranks>") for s in seen]


@pytest.mark.parametrize("neighbour", sorted(NEIGHBOURS))
def test_neighbouring_datasets_run_the_same_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, neighbour: str
) -> None:
    """Whatever the load-time checks found (an extra row, a value out of bounds), the engine runs
    the very same SQL for the same query: the execution path is chosen from the declaration and
    the query alone (the whole-dataset COUNT(*) comes from the checks' counts for both)."""
    base = _statements(tmp_path, BASE, monkeypatch)
    other = _statements(tmp_path, NEIGHBOURS[neighbour], monkeypatch)
    assert base == other
    assert len(base) == len(QUERIES) - 1  # the plain COUNT(*) runs no SQL, on either
    assert all("row_number" in s or "<ranks>" in s or "LEAST" in s for s in base)  # always bounded


def test_reject_mode_skips_clamps_by_declaration(tmp_path: Path) -> None:
    """With on_violation = "reject" the declared bounds hold for any file that loads (one that
    breaks them is refused), so no clamp runs; the operator sees the refusal, not the analyst."""
    cfg = dataset(write_parquet(tmp_path / "d.parquet", BASE), COLUMNS, k=1)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert dict(loaded.proven_bounds) == {"v": (0, 10)}
    answer = Engine(con, {"d": loaded}).execute(QUERIES[1], cfg.schema)
    assert answer.values[Measurement(MeasureKind.SUM, "v")] == (10,)
    bad = dataset(write_parquet(tmp_path / "e.parquet", NEIGHBOURS["a value out of bounds (clamp)"]), COLUMNS)
    with pytest.raises(DataError, match="outside the declared"):
        load_dataset(bad, duckdb.connect())


# ---- a dataset is one literal file ------------------------------------------------------------


def test_a_glob_in_a_dataset_path_is_refused_by_the_catalog(tmp_path: Path) -> None:
    """The cause: DuckDB expands ``*`` in ``read_parquet``, while the checks and the file stamp
    covered only the literal file. A file literally named ``d*.parquet`` exists here and passes
    the checks, but ``d2.parquet`` (which the glob also matches) holds a value far out of bounds
    that would have been released unclamped. The catalog refuses the path."""
    literal = write_parquet(tmp_path / "d*.parquet", BASE)
    write_parquet(tmp_path / "d2.parquet", {"pid": [9], "v": [10**9], "g": ["a"]})
    # What DuckDB would have read: both files.
    rows = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{literal}')").fetchone()
    assert rows is not None and rows[0] == 5
    with pytest.raises(DataError) as info:
        load_dataset(dataset(literal, COLUMNS), duckdb.connect())
    assert "glob" in info.value.message and "one file" in info.value.message


@pytest.mark.parametrize("name", ["d*.parquet", "d?.parquet", "d[12].parquet"])
def test_a_glob_in_a_dataset_path_is_refused_by_the_config(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, VALID.replace('"data/residents.parquet"', f'"data/{name}"'))
    (tmp_path / "data" / name).write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    message = info.value.message
    assert message.startswith(f"{path}: ") and "datasets.residents.path" in message
    assert "glob" in message and "one file" in message
