"""accord.node.duckdb.catalog: datasets exposed to DuckDB and checked against their declarations at load."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from accord.errors import DataError
from accord.node.duckdb.catalog import file_stamp, load_dataset, load_datasets
from accord.query.schema import ColumnSpec, ColumnType
from tests.unit.nodedata import PUMS_DUP, dataset, pums, pums_rows, write_csv, write_parquet

COLS = (
    ColumnSpec("pid", ColumnType.STRING),
    ColumnSpec("age", ColumnType.INTEGER, 0, 100),
    ColumnSpec("score", ColumnType.FLOAT, 0.0, 1.0),
    ColumnSpec("district", ColumnType.STRING, categories=("north", "south")),
)


def people(tmp_path: Path, **overrides: list[object]) -> Path:
    data: dict[str, list[object]] = {
        "pid": ["p1", "p2", "p3", "p4"],
        "age": [30, 40, 50, 60],
        "score": [0.1, 0.5, 0.9, None],
        "district": ["north", "south", None, "north"],
        "secret": ["a", "b", "c", "d"],  # not declared: never exposed
    }
    data.update(overrides)
    return write_parquet(tmp_path / "people.parquet", data)


def test_parquet_view_exposes_only_declared_columns(tmp_path: Path) -> None:
    con = duckdb.connect()
    loaded = load_datasets((dataset(people(tmp_path), COLS),), con)["d"]
    assert loaded.report.persons_over_limit == 0
    assert loaded.stamp == file_stamp(tmp_path / "people.parquet")
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {loaded.relation}").fetchall()]
    assert cols == ["pid", "age", "score", "district"]
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'accord_d'"
    ).fetchall()
    assert kind == [("VIEW",)]  # no copy of the Parquet file
    assert loaded.report.rows == 4 and loaded.report.violations == []


def test_csv_is_loaded_into_a_typed_table() -> None:
    con = duckdb.connect()
    loaded = load_dataset(pums(k=1), con)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'accord_pums'"
        ).fetchall()
    )
    assert types == {
        "pid": "BIGINT",
        "age": "BIGINT",
        "sex": "BIGINT",
        "educ": "BIGINT",
        "race": "BIGINT",
        "income": "DOUBLE",
        "married": "BOOLEAN",
    }
    rows = pums_rows()
    assert loaded.report.rows == len(rows) == 1948
    per_person = Counter(r["pid"] for r in rows)
    assert loaded.report.persons_over_limit == sum(1 for n in per_person.values() if n > 1)
    # With a limit at least the largest number of rows of anyone, nobody is over it.
    assert load_dataset(pums(k=max(per_person.values())), con).report.persons_over_limit == 0
    assert load_dataset(pums(k=max(per_person.values()) - 1), con).report.persons_over_limit > 0


def test_missing_column_names_column_and_file(tmp_path: Path) -> None:
    cols = (*COLS, ColumnSpec("income", ColumnType.FLOAT, 0.0, 10.0))
    path = people(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(dataset(path, cols), duckdb.connect())
    assert "'income'" in info.value.message and str(path) in info.value.message
    csv = write_csv(tmp_path / "p.csv", ["pid", "age"], [["a", 1]])
    with pytest.raises(DataError, match="column 'score' is declared but the file has no such column"):
        load_dataset(dataset(csv, COLS), duckdb.connect())


def test_incompatible_parquet_type(tmp_path: Path) -> None:
    path = people(tmp_path, age=["30", "40", "50", "60"])
    with pytest.raises(DataError, match="column 'age' is VARCHAR in the file but declared integer"):
        load_dataset(dataset(path, COLS), duckdb.connect())


def test_integer_file_column_is_fine_for_a_float_declaration(tmp_path: Path) -> None:
    path = people(tmp_path, score=[0, 1, 1, 0])
    con = duckdb.connect()
    loaded = load_dataset(dataset(path, COLS), con)
    assert con.execute(f"SELECT sum(score) FROM {loaded.relation}").fetchone() == (2.0,)


def test_violations_rejected_with_counts_never_values(tmp_path: Path) -> None:
    path = people(
        tmp_path,
        pid=["p1", None, "p3", "p4"],
        age=[30, 4000, -7, 60],
        score=[0.1, 2.5, float("nan"), None],
        district=["north", "east-side-secret", "westx", None],
    )
    with pytest.raises(DataError) as info:
        load_dataset(dataset(path, COLS), duckdb.connect())
    msg = info.value.message.replace(str(path), "<file>")  # the temp path may hold "-7" (pytest-7x)
    assert "1 row(s) have no value in the privacy unit column" in msg
    assert "column 'age': 2 row(s) lie outside the declared [lower, upper] bounds" in msg
    assert "column 'score': 2 row(s)" in msg  # 2.5 and NaN
    assert "column 'district': 2 row(s) hold a value that is not a declared category" in msg
    assert 'on_violation = "clamp"' in msg and "widen the declared bounds" in msg and "fix the data" in msg
    for value in ("4000", "-7", "2.5", "east-side-secret", "westx", "p1", "p3", "nan"):
        assert value not in msg


def test_violations_clamped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = people(
        tmp_path, pid=["p1", None, "p3", "p3"], age=[30, 4000, -7, 60], district=["x", "y", "north", None]
    )
    con = duckdb.connect()
    with caplog.at_level(logging.WARNING, logger="accord.node.duckdb.catalog"):
        loaded = load_dataset(dataset(path, COLS, on_violation="clamp"), con)
    text = caplog.text
    assert "column 'age': 2 row(s)" in text and "column 'district': 2 row(s)" in text and "clamp" in text
    assert "4000" not in text and "p3" not in text
    assert loaded.report.null_units == 1 and loaded.report.persons_over_limit == 1


def test_csv_unparsable_values_counted_not_quoted(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "p.csv",
        ["pid", "age", "score", "district", "extra"],
        [["p1", "12", "0.5", "north", "x"], ["p2", "twelve", "0.5", "south", "y"], ["p3", "13", "", "", "z"]],
    )
    with pytest.raises(DataError) as info:
        load_dataset(dataset(path, COLS), duckdb.connect())
    assert "column 'age': 1 value(s) cannot be read as the declared type" in info.value.message
    assert "twelve" not in info.value.message
    con = duckdb.connect()
    fixed = write_csv(tmp_path / "p.csv", ["pid", "age", "score", "district"], [["p1", "12", "", ""]])
    loaded = load_dataset(dataset(fixed, COLS), con)
    assert con.execute(f"SELECT * FROM {loaded.relation}").fetchall() == [("p1", 12, None, None)]


def test_rejected_csv_reload_leaves_no_table(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", ["pid", "age", "score", "district"], [["p1", "1000", "", ""]])
    con = duckdb.connect()
    with pytest.raises(DataError):
        load_dataset(dataset(path, COLS), con, version=3)
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


def test_privacy_unit_column_named_like_internal_aliases(tmp_path: Path) -> None:
    cols = (ColumnSpec("n", ColumnType.INTEGER), ColumnSpec("pid", ColumnType.INTEGER, 0, 1))
    path = write_parquet(tmp_path / "x.parquet", {"n": [1, 1, 2], "pid": [0, 1, 1]}, {"n": pa.int32()})
    loaded = load_dataset(dataset(path, cols, privacy_unit="n"), duckdb.connect())
    assert loaded.report.persons_over_limit == 1


def test_pums_bounds_hold() -> None:
    """The census sample respects the usual public bounds (age 0-100, income 0-500000)."""
    loaded = load_dataset(pums(), duckdb.connect())
    assert loaded.report.violations == []
    assert PUMS_DUP.exists()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rows_per_person_counted_in_passes_agree(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """Property: splitting the persons into passes (to bound memory) changes no count."""
    from accord.node.duckdb import catalog

    per_person = Counter(r["pid"] for r in pums_rows())
    con = duckdb.connect()
    one = load_dataset(pums(k), con).report
    monkeypatch.setattr(catalog, "_ROWS_PER_PASS", 150)  # 1948 rows: 13 passes
    many = load_dataset(pums(k), con).report
    assert one == many
    assert many.persons_over_limit == sum(1 for n in per_person.values() if n > k)
    assert many.bounded_rows == sum(min(n, k) for n in per_person.values())


def test_rows_without_a_person_id_are_not_counted_per_person(tmp_path: Path) -> None:
    path = people(tmp_path, pid=["p1", None, "p1", None])
    loaded = load_dataset(dataset(path, COLS, on_violation="clamp"), duckdb.connect())
    assert loaded.report.null_units == 2
    assert (loaded.report.persons_over_limit, loaded.report.bounded_rows) == (1, 1)
