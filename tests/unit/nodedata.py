"""Helpers shared by the node catalog and engine tests: dataset configs and the census sample."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from accord.node.config import DatasetConfig
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from tests.paths import CENSUS

PUMS_DUP = CENSUS / "PUMS_dup.csv"

PUMS_COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER),
    ColumnSpec("age", ColumnType.INTEGER, 0, 100),
    ColumnSpec("sex", ColumnType.INTEGER, categories=(0, 1)),
    ColumnSpec("educ", ColumnType.INTEGER, 1, 16, categories=tuple(range(1, 17))),
    ColumnSpec("race", ColumnType.INTEGER, categories=(1, 2, 3, 4, 5, 6, 7, 8)),  # 7, 8: maybe empty
    ColumnSpec("income", ColumnType.FLOAT, 0.0, 500000.0),
    ColumnSpec("married", ColumnType.BOOLEAN, categories=(True, False)),
)


def dataset(
    path: Path,
    columns: tuple[ColumnSpec, ...],
    *,
    name: str = "d",
    privacy_unit: str = "pid",
    k: int = 1,
    on_violation: str = "reject",
    fmt: str | None = None,
) -> DatasetConfig:
    fmt = fmt or ("csv" if path.suffix == ".csv" else "parquet")
    return DatasetConfig(DatasetSchema(name, columns, privacy_unit, k), path, fmt, on_violation)


def pums(k: int = 1, columns: tuple[ColumnSpec, ...] = PUMS_COLUMNS, path: Path = PUMS_DUP) -> DatasetConfig:
    return dataset(path, columns, name="pums", k=k)


def pums_rows(path: Path = PUMS_DUP) -> list[dict[str, Any]]:
    """The census sample read independently with the csv module."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append(
            {
                "pid": int(r["pid"]),
                "age": int(r["age"]),
                "sex": int(r["sex"]),
                "educ": int(r["educ"]),
                "race": int(r["race"]),
                "income": float(r["income"]),
                "married": r["married"] == "1",
            }
        )
    return out


def write_parquet(
    path: Path, columns: dict[str, list[Any]], types: dict[str, pa.DataType] | None = None
) -> Path:
    types = types or {}
    table = pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # a new inode: the change is always visible in the file stamp
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
    os.replace(tmp, path)
    return path
