"""Expose each configured dataset to DuckDB and check its file against the declared schema.

Parquet files become a VIEW over ``read_parquet(path)`` (no copy: every query reads the file).
CSV files are loaded once into a TABLE with the declared column types. Either way the relation has
exactly the declared columns under their declared names, typed ``BIGINT``/``DOUBLE``/``BOOLEAN``/
``VARCHAR`` (integer columns keep the file's integer width); extra file columns are not exposed.
A dataset's ``path`` is one literal file: DuckDB would expand ``*``, ``?`` and ``[...]`` as a glob
and read files nobody checked, so a path holding one of them is refused (:func:`literal_path`).

At load (and again whenever the file's size, mtime or inode change) aggregate-only scans check:
the privacy unit is never NULL, numeric columns stay within their declared bounds, categorical
columns only hold declared categories (or NULL), and count the persons with more than
``max_rows_per_person`` rows (in passes over the person-id column, so that the memory this
takes stays bounded however many persons there are). Too many rows per person is not an error:
the engine bounds contributions in every query, whatever the checks found.

**What the checks may decide, and what they may not.** A check may stop the dataset (the operator
sees it, at start-up or at the next query after the file changed); it never chooses how a query is
executed. The execution path is a function of the declaration and the query alone
(:attr:`LoadedDataset.proven_bounds`, bounding in every query, ranks built for every dataset), so
how long a query takes does not tell whether somebody has more rows than ``max_rows_per_person``
or whether some value lay outside its bounds (issue 10). Each row's place in its person's bounding
order is computed once, into a small table aligned row for row with the dataset
(:func:`node.duckdb.ranks.build_ranks`), so that queries without WHERE bound contributions with a
filtered scan instead of numbering every row again.
Violations of bounds, categories or the person id are errors with ``on_violation = "reject"`` and
warnings with ``"clamp"`` (bounds are clamped at query time; undeclared categories fall outside
every public group; rows without a person id are dropped at query time).

Messages name the dataset, the file and the column, and give counts only: never a row value or a
person identifier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from accord.errors import DataError
from accord.node.config import DatasetConfig
from accord.node.duckdb.ranks import build_ranks
from accord.node.duckdb.sqlrender import SQL_TYPES, RowRanks, quote_ident
from accord.query.schema import ColumnSpec, ColumnType

__all__ = [
    "CheckReport",
    "LoadedDataset",
    "declared_bounds",
    "file_stamp",
    "literal_path",
    "load_dataset",
    "load_datasets",
    "relation_name",
]

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int]
"""``(size, mtime_ns, inode)`` of a dataset file: a cheap way to notice that it changed."""

_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})


@dataclass(frozen=True)
class CheckReport:
    """What the load-time scan found (counts only)."""

    rows: int = 0
    null_units: int = 0
    out_of_bounds: dict[str, int] = field(default_factory=dict)
    undeclared_categories: dict[str, int] = field(default_factory=dict)
    persons_over_limit: int = 0
    bounded_rows: int | None = None
    """Rows left after per-person bounding: the sum over persons (with a person id) of
    ``min(rows, max_rows_per_person)``, i.e. the exact ``COUNT(*)`` of the whole dataset as the
    engine would compute it. None when not computed."""

    @property
    def violations(self) -> list[str]:
        """One line per broken declaration, for the operator."""
        out = []
        if self.null_units:
            out.append(f"{self.null_units} row(s) have no value in the privacy unit column")
        for col, n in self.out_of_bounds.items():
            out.append(f"column {col!r}: {n} row(s) lie outside the declared [lower, upper] bounds")
        for col, n in self.undeclared_categories.items():
            out.append(f"column {col!r}: {n} row(s) hold a value that is not a declared category")
        return out


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset ready to query: its config, the (quoted) DuckDB relation, the file stamp the checks
    were run against and what they found (:attr:`report`: for the operator, never for choosing how
    a query runs)."""

    config: DatasetConfig
    relation: str
    stamp: FileStamp
    report: CheckReport
    proven_bounds: Mapping[str, tuple[int | float, int | float]] = field(default_factory=dict)
    """Column → the declared ``(lower, upper)`` that no value lies outside of (no NaN either), for
    this file stamp, *by declaration*: with ``on_violation = "reject"`` a file with a value outside
    them is refused (at load, or at the next query after it changed), so every bounded column is
    here; with ``"clamp"`` none is, whatever the file holds, so every SUM clamps. Clamping such a
    column is the identity, so the renderer skips it (:func:`node.duckdb.sqlrender.render`). It is
    a function of the config alone: which clamps run never depends on the data."""
    ranks: RowRanks | None = None
    """Each row's place in its person's bounding order, for this file stamp (built for every
    dataset; None only if building failed, which the operator is told, and the engine then numbers
    rows per query)."""

    @property
    def name(self) -> str:
        return self.config.schema.name


def file_stamp(path: Path) -> FileStamp:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def relation_name(config: DatasetConfig, version: int = 0) -> str:
    """The quoted DuckDB name of a dataset's relation (CSV reloads get a new version)."""
    suffix = f"__v{version}" if version else ""
    return quote_ident(f"accord_{config.schema.name}{suffix}")


def load_datasets(
    configs: tuple[DatasetConfig, ...], con: duckdb.DuckDBPyConnection
) -> dict[str, LoadedDataset]:
    """Create and check every dataset's relation. Raises :class:`DataError` on the first dataset
    that breaks its declarations with ``on_violation = "reject"``."""
    return {c.schema.name: load_dataset(c, con) for c in configs}


def load_dataset(config: DatasetConfig, con: duckdb.DuckDBPyConnection, version: int = 0) -> LoadedDataset:
    """Create ``relation_name(config, version)`` and check it (see the module docstring).

    The stamp is taken *before* reading, so a change during the load is noticed at the next query.
    On rejection a CSV table just created is dropped again."""
    where = f"dataset {config.schema.name!r} ({config.path})"
    literal_path(config, where)
    try:
        stamp = file_stamp(config.path)
    except OSError as err:
        raise DataError(
            f"{where}: cannot read the file ({err.strerror}); fix the path in the node config"
        ) from None
    relation = relation_name(config, version)
    try:
        if config.format == "parquet":
            select = _create_parquet_view(config, con, relation, where)
            path = _string_literal(str(config.path))
            positioned = (
                f"(SELECT {select}, file_row_number AS {{pos}} "
                f"FROM read_parquet({path}, file_row_number = true))"
            )
        else:
            _create_csv_table(config, con, relation, where)
            positioned = f"(SELECT *, rowid AS {{pos}} FROM {relation})"
        report = _check(config, con, relation)
    except duckdb.Error as err:
        # DuckDB messages can quote data values: keep them out of the error; name the exception kind.
        _drop(config, con, relation)
        raise DataError(
            f"{where}: DuckDB could not read the file ({type(err).__name__}); check that it is a valid "
            f"{config.format} file with a header row and the declared columns"
        ) from None
    k = config.schema.max_rows_per_person
    if report.rows > config.schema.max_rows:  # the declared ceiling that keeps sums in range
        _drop(config, con, relation)
        raise DataError(
            f"{where}: the file has {report.rows} rows, more than max_rows = {config.schema.max_rows}; "
            "raise max_rows in the dataset's config (sums whose bounds times max_rows could overflow are "
            "then refused) or split the file"
        )
    problems = report.violations
    if problems:
        fix = 'fix the data, widen the declared bounds/categories, or set on_violation = "clamp"'
        if config.on_violation == "reject":
            _drop(config, con, relation)
            raise DataError(f"{where}: {'; '.join(problems)} ({report.rows} rows in all); {fix}")
        log.warning(
            '%s: %s (%d rows in all); continuing because on_violation = "clamp": values are clamped to '
            "the bounds, undeclared categories fall outside every group, rows without a person id "
            "are dropped",
            where,
            "; ".join(problems),
            report.rows,
        )
    if report.persons_over_limit:
        log.info(
            "%s: %d person(s) have more than max_rows_per_person = %d rows; "
            "contributions are bounded per query",
            where,
            report.persons_over_limit,
            k,
        )
    # Ranks for every dataset, and bounding in every query: the path must not tell whether
    # somebody has more than k rows (module docstring).
    ranks = build_ranks(config, con, relation, positioned, report.rows, _passes(report.rows), where)
    log.info("%s: %d rows checked", where, report.rows)
    return LoadedDataset(config, relation, stamp, report, declared_bounds(config), ranks)


def declared_bounds(config: DatasetConfig) -> dict[str, tuple[int | float, int | float]]:
    """The bounds the load guarantees, from the config alone (:attr:`LoadedDataset.proven_bounds`):
    every bounded column's with ``on_violation = "reject"`` (a file breaking them is refused), none
    with ``"clamp"``."""
    if config.on_violation != "reject":
        return {}
    return {
        c.name: (c.lower, c.upper)
        for c in config.schema.columns
        if c.lower is not None and c.upper is not None
    }


_GLOB_CHARACTERS = frozenset("*?[")
"""What DuckDB's file readers expand as a glob (``**`` included): ``*``, ``?`` and ``[...]``."""


def literal_path(config: DatasetConfig, where: str) -> None:
    """Refuse a dataset path that DuckDB would expand as a glob: the checks (and the file stamp)
    cover one file, so every file the query reads must be that file. Raises :class:`DataError`."""
    found = sorted(_GLOB_CHARACTERS & set(str(config.path)))
    if found:
        raise DataError(
            f"{where}: the path holds {' '.join(repr(c) for c in found)}, which DuckDB reads as a glob "
            "over several files, but a dataset is one checked file; give the path of one file "
            "(rename it, or combine the files into one)"
        )


def _drop(config: DatasetConfig, con: duckdb.DuckDBPyConnection, relation: str) -> None:
    if config.format == "csv":
        con.execute(f"DROP TABLE IF EXISTS {relation}")


def _string_literal(text: str) -> str:
    """An SQL string literal for a *file path from the operator's config* (DDL cannot take
    parameters). Quotes are doubled; no query input ever reaches this function."""
    return "'" + text.replace("'", "''") + "'"


def _file_columns(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _missing(config: DatasetConfig, found: dict[str, str], where: str) -> None:
    for spec in config.schema.columns:
        if spec.name not in found:
            raise DataError(
                f"{where}: column {spec.name!r} is declared but the file has no such column "
                f"(it has {len(found)} columns); fix the column name in the node config or the file"
            )


def _create_parquet_view(
    config: DatasetConfig, con: duckdb.DuckDBPyConnection, relation: str, where: str
) -> str:
    """Create the view; return its select list (which :func:`node.duckdb.ranks.build_ranks` reads with
    row positions)."""
    source = f"read_parquet({_string_literal(str(config.path))})"
    found = _file_columns(con, source)
    _missing(config, found, where)
    select = []
    for spec in config.schema.columns:
        file_type = found[spec.name].upper()
        col = quote_ident(spec.name)
        if not _compatible(spec, file_type):
            raise DataError(
                f"{where}: column {spec.name!r} is {file_type} in the file but declared {spec.type.value}; "
                "fix the declared type or convert the column"
            )
        if spec.type is ColumnType.INTEGER or file_type == SQL_TYPES[spec.type]:
            select.append(col)
        else:
            select.append(f"CAST({col} AS {SQL_TYPES[spec.type]}) AS {col}")
    con.execute(f"CREATE OR REPLACE VIEW {relation} AS SELECT {', '.join(select)} FROM {source}")
    return ", ".join(select)


def _compatible(spec: ColumnSpec, file_type: str) -> bool:
    if spec.type is ColumnType.INTEGER:
        return file_type in _INTEGER_TYPES
    if spec.type is ColumnType.FLOAT:
        return file_type in _FLOAT_TYPES or file_type in _INTEGER_TYPES or file_type.startswith("DECIMAL")
    if spec.type is ColumnType.BOOLEAN:
        return file_type == "BOOLEAN"
    return file_type == "VARCHAR" or file_type.startswith("ENUM")


def _create_csv_table(
    config: DatasetConfig, con: duckdb.DuckDBPyConnection, relation: str, where: str
) -> None:
    """Load the declared columns with their declared types. Every value is first read as text and
    the values that would not convert are counted, so a malformed value is reported by count (it is
    a type error, whatever ``on_violation`` says) and never aborts the load with a message quoting
    it."""
    source = f"read_csv({_string_literal(str(config.path))}, header = true, all_varchar = true)"
    found = _file_columns(con, source)
    _missing(config, found, where)
    cols = config.schema.columns
    bad = ", ".join(
        f"count(*) FILTER (WHERE {quote_ident(c.name)} IS NOT NULL AND "
        f"TRY_CAST({quote_ident(c.name)} AS {SQL_TYPES[c.type]}) IS NULL)"
        for c in cols
    )
    row = con.execute(f"SELECT {bad} FROM {source}").fetchone()
    assert row is not None
    unparsable = [f"column {c.name!r}: {n} value(s)" for c, n in zip(cols, row, strict=True) if n]
    if unparsable:
        raise DataError(
            f"{where}: {'; '.join(unparsable)} cannot be read as the declared type; fix the data or the "
            "declared column type"
        )
    select = ", ".join(
        f"CAST({quote_ident(c.name)} AS {SQL_TYPES[c.type]}) AS {quote_ident(c.name)}" for c in cols
    )
    con.execute(f"CREATE OR REPLACE TABLE {relation} AS SELECT {select} FROM {source}")


def _check(config: DatasetConfig, con: duckdb.DuckDBPyConnection, relation: str) -> CheckReport:
    """Aggregates only, bounds and categories as bound parameters. First one streaming scan counts
    the rows, the rows without a person id and each column's violations (no grouping, so its
    memory does not grow with the data); then the rows per person are counted (see
    :func:`_per_person`)."""
    schema = config.schema
    pid = quote_ident(schema.privacy_unit)
    params: list[object] = []

    def param(value: object, spec: ColumnSpec) -> str:
        params.append(value)
        return f"CAST(${len(params)} AS {SQL_TYPES[spec.type]})"

    totals = ["count(*)", f"count(*) FILTER (WHERE {pid} IS NULL)"]
    bounded = [c for c in schema.columns if c.lower is not None]
    categorical = [c for c in schema.columns if c.categories is not None]
    for spec in bounded:
        col = quote_ident(spec.name)
        lo, hi = param(spec.lower, spec), param(spec.upper, spec)
        nan = f" OR isnan({col})" if spec.type is ColumnType.FLOAT else ""
        totals.append(f"count(*) FILTER (WHERE {col} < {lo} OR {col} > {hi}{nan})")
    for spec in categorical:
        assert spec.categories is not None
        col = quote_ident(spec.name)
        items = ", ".join(param(v, spec) for v in spec.categories)
        totals.append(f"count(*) FILTER (WHERE {col} IS NOT NULL AND {col} NOT IN ({items}))")
    row = con.execute(f"SELECT {', '.join(totals)} FROM {relation}", params).fetchone()
    assert row is not None
    values = [int(v or 0) for v in row]
    rows, nulls = values[0], values[1]
    oob = values[2 : 2 + len(bounded)]
    cats = values[2 + len(bounded) : 2 + len(bounded) + len(categorical)]
    over, bounded_rows = _per_person(con, relation, pid, schema.max_rows_per_person, rows - nulls)
    return CheckReport(
        rows=rows,
        null_units=nulls,
        out_of_bounds={c.name: n for c, n in zip(bounded, oob, strict=True) if n},
        undeclared_categories={c.name: n for c, n in zip(categorical, cats, strict=True) if n},
        persons_over_limit=over,
        bounded_rows=bounded_rows,
    )


_ROWS_PER_PASS = 2_000_000
"""Rows per pass of :func:`_per_person` and of :func:`node.duckdb.ranks.build_ranks` (bounds the memory
their hash tables and windows take)."""


def _passes(rows: int) -> int:
    return max(1, -(-rows // _ROWS_PER_PASS))


def _per_person(
    con: duckdb.DuckDBPyConnection, relation: str, pid: str, k: int, rows: int
) -> tuple[int, int]:
    """``(persons with more than k rows, sum over persons of min(rows, k))``, rows without a person
    id left out. Counting rows per person needs a hash table with one entry per person, which for
    tens of millions of persons would cost far more memory than any query; so the persons are
    split by ``hash(pid) % passes`` (every person falls in exactly one pass) into passes of about
    :data:`_ROWS_PER_PASS` rows, each reading only the person-id column."""
    passes = _passes(rows)
    over = bounded_rows = 0
    for i in range(passes):
        part = f" AND hash({pid}) % {passes} = {i}" if passes > 1 else ""
        row = con.execute(
            "SELECT count(*) FILTER (WHERE n > CAST($1 AS BIGINT)), sum(LEAST(n, CAST($1 AS BIGINT))) "
            f"FROM (SELECT count(*) AS n FROM {relation} WHERE {pid} IS NOT NULL{part} GROUP BY {pid})",
            [k],
        ).fetchone()
        assert row is not None
        over += int(row[0] or 0)
        bounded_rows += int(row[1] or 0)
    return over, bounded_rows
