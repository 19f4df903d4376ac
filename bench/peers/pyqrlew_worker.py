"""Peer worker: pyqrlew's DP SQL rewriting, executed on DuckDB (run with bench/.venvs/pyqrlew).

Idiomatic use: a ``pyqrlew.Dataset`` describing the table (we reflect the column types from an
empty SQLite table with ``Dataset.from_database``, then declare the public bounds with
``with_range`` and the regions with ``with_possible_values``), ``dataset.relation(sql)``,
``rewrite_with_differential_privacy(...)``, ``to_query()``, and the rewritten SQL runs on DuckDB
reading the same Parquet file (a view over ``read_parquet``).

Differences from Accord, reported in the row's note:

* pyqrlew adds **Gaussian** noise and needs delta > 0: the release is (epsilon, delta)-DP with
  delta = 1e-5, a weaker guarantee than Accord's pure epsilon-DP.
* pyqrlew treats the table size as public metadata (its ``Size`` statistics); we give it the row
  count from the Parquet footer.
* pyqrlew charges each statistic the whole budget it is given (``AVG`` is a noisy ``SUM`` and a
  noisy ``COUNT``): a mean gets (epsilon/2, delta/2) so the query spends (epsilon, delta) in total.
* Privacy unit ``_PRIVACY_UNIT_ROW_`` with max multiplicity 1: the file has one row per person, so
  this is Accord's person-level unit, without the per-person hashing and grouping pyqrlew would
  add for an identifier column.

End to end = DuckDB connection + view over the file + dataset + rewrite + execution. Once loaded =
the table copied into DuckDB's memory, then rewrite + execution.
"""

from __future__ import annotations

import json
import uuid
from importlib.metadata import version
from typing import Any

import duckdb
import pyqrlew
import sqlalchemy as sa
from workerlib import Peer, Unsupported, main, numbers

DELTA = 1e-5
PRIVACY_UNIT = "_PRIVACY_UNIT_ROW_"
_SQL_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "boolean": "BOOLEAN", "string": "TEXT"}


def _dataset(spec: dict[str, Any], rows: int) -> pyqrlew.Dataset:
    table = spec["table"]
    engine = sa.create_engine("sqlite://")
    cols = ", ".join(f"{n} {_SQL_TYPES[c['type']]}" for n, c in spec["columns"].items())
    with engine.begin() as con:
        con.exec_driver_sql(f"CREATE TABLE {table} ({cols})")
    reflected = pyqrlew.Dataset.from_database("bench", engine, None, ranges=False)
    # The reflected size is the empty table's (0 rows), which would bound every count to 0: give
    # pyqrlew the file's row count, its public size statistic.
    schema, size = json.loads(reflected.schema), json.loads(reflected.size or "{}")
    for tab in size["statistics"]["union"]["fields"]:
        struct = tab["statistics"]["struct"]
        struct["size"] = str(rows)
        for f in struct["fields"]:
            stats = f["statistics"]
            kind = next(k for k in stats if k not in ("name", "properties"))
            stats[kind]["size"] = rows
    dataset = {
        "@type": "sarus_data_spec/sarus_data_spec.Dataset",
        "uuid": schema["dataset"],
        "name": "bench",
        "spec": {"transformed": {"transform": uuid.uuid4().hex, "arguments": [], "named_arguments": {}}},
        "properties": {},
        "doc": "Accord benchmark",
    }
    ds = pyqrlew.Dataset.from_str(json.dumps(dataset), json.dumps(schema), json.dumps(size))
    for name, col in spec["columns"].items():
        if col.get("lower") is not None:
            ds = ds.with_range(None, table, name, float(col["lower"]), float(col["upper"]))
        if col.get("categories") is not None and col["type"] == "string":
            ds = ds.with_possible_values(None, table, name, [str(v) for v in col["categories"]])
    return ds


def _open(path: str, spec: dict[str, Any], in_memory: bool) -> tuple[Any, pyqrlew.Dataset]:
    con = duckdb.connect()
    file = "'" + path.replace("'", "''") + "'"
    kind = "TABLE" if in_memory else "VIEW"
    con.execute(f"CREATE {kind} {spec['table']} AS SELECT * FROM read_parquet({file})")
    (rows,) = con.execute(f"SELECT sum(num_rows) FROM parquet_file_metadata({file})").fetchone()
    return con, _dataset(spec, rows)


def open_file(path: str, spec: dict[str, Any], eps: float) -> tuple[Any, pyqrlew.Dataset]:
    return _open(path, spec, in_memory=False)


def load(path: str, spec: dict[str, Any], eps: float) -> tuple[Any, pyqrlew.Dataset]:
    return _open(path, spec, in_memory=True)


def _stats(spec: dict[str, Any]) -> int:
    """How many noisy statistics pyqrlew releases, each charged the whole (epsilon, delta) it is
    given (its DpEvent for AVG composes two Gaussian events at the full budget)."""
    return 2 if spec["agg"] == "mean" else 1


def _rewrite(ds: pyqrlew.Dataset, spec: dict[str, Any], eps: float) -> Any:
    n = _stats(spec)
    budget = {"epsilon": eps / n, "delta": DELTA / n}
    try:
        relation = ds.relation(spec["sql"])
        return relation.rewrite_with_differential_privacy(
            ds, [(spec["table"], [], PRIVACY_UNIT)], budget, max_multiplicity=1.0
        )
    except (RuntimeError, ValueError) as err:
        raise Unsupported(f"pyqrlew cannot rewrite it: {err}") from None


def release(state: tuple[Any, pyqrlew.Dataset], spec: dict[str, Any], eps: float) -> list[float]:
    con, ds = state
    rows = con.execute(_rewrite(ds, spec, eps).relation().to_query()).fetchall()
    group = spec.get("group_by")
    if group is None:
        return numbers([rows[0][0]])
    got = {r[0]: r[1] for r in rows}
    return numbers([got.get(k) for k in spec["keys"]])


def describe(state: tuple[Any, pyqrlew.Dataset], spec: dict[str, Any], eps: float) -> dict[str, Any]:
    return {"dp_event": _rewrite(state[1], spec, eps).dp_event().to_dict(), "delta": DELTA}


PEER = Peer(
    "pyqrlew",
    f"pyqrlew {version('pyqrlew')}, duckdb {duckdb.__version__}",
    open_file,
    load,
    release,
    describe,
    notes=[
        f"(epsilon, delta={DELTA:g})-DP with Gaussian noise (Accord: pure epsilon-DP, Laplace)",
        "row-level privacy unit, max multiplicity 1 (one row per person in the file); table size "
        "given as public metadata; regions as public possible values; AVG = SUM + COUNT each at "
        "half the budget",
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(PEER))
