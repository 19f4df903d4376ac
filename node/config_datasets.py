"""The ``[datasets.NAME]`` tables of the node config: each dataset's file, format, person column,
limits, answer-time budgets and columns (the public metadata analysts see), validated with the
file, the key and the fix in every message. Read by :func:`accord.node.config.load_node_config`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from accord.config import Table
from accord.errors import ConfigError
from accord.query.model import Literal
from accord.query.schema import DEFAULT_MAX_ROWS, MAX_ROWS_LIMIT, ColumnSpec, ColumnType, DatasetSchema

__all__ = ["FORMATS", "ON_VIOLATION", "DatasetConfig", "answer_seconds", "dataset_config"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FORMATS = ("parquet", "csv")
ON_VIOLATION = ("reject", "clamp")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

_DATASET_KEYS = {
    "path",
    "format",
    "description",
    "privacy_unit",
    "max_rows_per_person",
    "max_rows",
    "on_violation",
    "columns",
    "answer_seconds",
    "grouped_answer_seconds",
    "secure_aggregation",
    "holders",
}
_COLUMN_KEYS = {"type", "lower", "upper", "categories", "description"}
_MAX_ANSWER_SECONDS = 600.0


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: its public schema, where its file is, the file format and the violation policy."""

    schema: DatasetSchema
    path: Path
    format: str  # "parquet" | "csv"
    on_violation: str = "reject"  # "reject" | "clamp"
    answer_seconds: float | None = None  # this dataset's answer-time budget (the node's otherwise)
    grouped_answer_seconds: float | None = None  # ... of its GROUP BY queries (answer_seconds otherwise)
    secure_aggregation: bool = False  # answered only by secure aggregation ([secure_aggregation])
    holders: tuple[str, ...] = ()  # with secure_aggregation: every node holding it (this one too)


def dataset_config(t: Table, name: str) -> DatasetConfig:
    if not _IDENT.match(name):
        raise t.error(
            "", "dataset names are SQL identifiers: letters, digits and '_', not starting with a digit"
        )
    t.check_keys(_DATASET_KEYS)
    path = t.path("path")
    if "format" in t.table:
        fmt = t.get("format", str)
        if fmt not in FORMATS:
            raise t.error("format", f"{fmt!r} is not supported; use one of {', '.join(map(repr, FORMATS))}")
    else:
        fmt = _SUFFIXES.get(path.suffix.lower(), "")
        if not fmt:
            raise t.error(
                "path", 'cannot tell the file format from its suffix; add format = "parquet" or "csv"'
            )
    _literal_path(t, path)
    if not path.is_file():
        raise t.error(
            "path", f"no such file {str(path)!r}; fix the path (relative paths start at the config's folder)"
        )
    description = t.get("description", str, "")
    privacy_unit = t.get("privacy_unit", str, required=True)
    k = t.get("max_rows_per_person", int, 1)
    if k < 1:
        raise t.error("max_rows_per_person", "must be at least 1")
    max_rows = t.get("max_rows", int, DEFAULT_MAX_ROWS)
    if not 1 <= max_rows <= MAX_ROWS_LIMIT:
        raise t.error(
            "max_rows", f"must be from 1 to {MAX_ROWS_LIMIT}; declare the most rows the file may hold"
        )
    on_violation = t.get("on_violation", str, "reject")
    if on_violation not in ON_VIOLATION:
        note = (
            " (extra rows per person are always dropped at query time, down to max_rows_per_person; "
            "on_violation only decides what happens when values break the declared bounds or categories)"
            if on_violation == "truncate"
            else ""
        )
        raise t.error("on_violation", f'{on_violation!r} is not allowed; use "reject" or "clamp"{note}')

    cols = t.sub("columns", required=True)
    if not cols.table:
        raise cols.error("", "no columns declared; add a [columns.NAME] table per column analysts may use")
    columns = tuple(_column(cols.sub(c), c) for c in cols.table)
    if privacy_unit not in cols.table:
        near = difflib.get_close_matches(privacy_unit, list(cols.table), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise t.error(
            "privacy_unit",
            f"{privacy_unit!r} is not a declared column; {hint}declare the person-identifier column "
            f"as [{cols.key(privacy_unit)}]",
        )
    try:
        schema = DatasetSchema(name, columns, privacy_unit, k, description, max_rows)
    except ConfigError as err:
        raise t.error("", err.message) from None
    answer, grouped = (
        answer_seconds(t, k, None, 0.001) for k in ("answer_seconds", "grouped_answer_seconds")
    )
    secure = bool(t.get("secure_aggregation", bool, False))
    holders: tuple[str, ...] = ()
    if secure:
        named = t.names("holders", '["county", "district-a"]', "every node holding this dataset")
        holders = tuple(sorted(named))
    elif t.has("holders"):
        raise t.error("holders", "is for secure aggregation only; set secure_aggregation = true or remove it")
    return DatasetConfig(schema, path, fmt, on_violation, answer, grouped, secure, holders)


def answer_seconds(t: Table, key: str, default: float | None, low: float) -> float | None:
    """An answer-time budget in seconds, between ``low`` and 600."""
    value: float | None = t.get(key, float, default)
    if value is not None and not (low <= value <= _MAX_ANSWER_SECONDS):
        lowest = "0 (padding off)" if low == 0 else "more than 0"
        raise t.error(
            key,
            f"must be between {lowest} and {_MAX_ANSWER_SECONDS:g} seconds; set it above the slowest "
            "time this node takes to answer (1.0 is a good start; `make bench` measures it)",
        )
    return value


def _literal_path(t: Table, path: Path) -> None:
    """A dataset is one file: DuckDB would expand ``*``, ``?`` and ``[`` in a path as a glob and read
    files the load-time checks never saw."""
    found = sorted(set("*?[") & set(str(path)))
    if found:
        raise t.error(
            "path",
            f"holds {' '.join(repr(c) for c in found)}, which DuckDB reads as a glob over several files; "
            "a dataset is one checked file: give the path of one file (rename it, or combine the files)",
        )


def _column(t: Table, name: str) -> ColumnSpec:
    if not _IDENT.match(name):
        raise t.error(
            "", "column names are SQL identifiers: letters, digits and '_', not starting with a digit"
        )
    t.check_keys(_COLUMN_KEYS)
    raw_type = t.get("type", str, required=True)
    try:
        ctype = ColumnType(raw_type)
    except ValueError:
        allowed = [c.value for c in ColumnType]
        near = difflib.get_close_matches(raw_type, allowed, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(allowed)}"
        raise t.error("type", f"{raw_type!r} is not a column type; {hint}") from None

    lower = upper = None
    if t.has("lower") or t.has("upper"):
        if not ctype.numeric:
            key = "lower" if t.has("lower") else "upper"
            raise t.error(key, "bounds only apply to integer or float columns; remove it or change the type")
        kind: type = int if ctype is ColumnType.INTEGER else float
        lower = t.get("lower", kind, required=True)
        upper = t.get("upper", kind, required=True)
        if ctype is ColumnType.FLOAT and not (abs(lower) < float("inf") and abs(upper) < float("inf")):
            raise t.error("lower", "bounds must be finite numbers")

    categories: tuple[Literal, ...] | None = None
    if t.has("categories"):
        raw = t.get("categories", list)
        categories = tuple(_category(t, ctype, v) for v in raw)

    description = t.get("description", str, "")
    try:
        return ColumnSpec(name, ctype, lower, upper, categories, description)
    except ConfigError as err:
        key = "categories" if "categor" in err.message else ("upper" if lower is not None else "")
        raise t.error(key, err.message) from None


def _category(t: Table, ctype: ColumnType, value: object) -> Literal:
    ok: bool
    if ctype is ColumnType.STRING:
        ok = isinstance(value, str)
    elif ctype is ColumnType.BOOLEAN:
        ok = isinstance(value, bool)
    elif ctype is ColumnType.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)  # type: ignore[arg-type]
    if not ok:
        kind = "boolean" if isinstance(value, bool) else type(value).__name__
        raise t.error(
            "categories", f"{value!r} is a {kind}, but the column is {ctype.value}; list {ctype.value} values"
        )
    assert isinstance(value, (str, int, float, bool))
    return value


# ---- writing ------------------------------------------------------------------------------------
