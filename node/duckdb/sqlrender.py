"""Render a :class:`~accord.query.model.Query` to one SQL statement computing every exact measurement.

This module is pure: it knows the query model and the dataset schema, and produces SQL text plus a
list of bound parameters. It does not execute anything, so another backend (a future PostgreSQL
push-down) can reuse it with a different dialect. The SQL uses only standard constructs plus
DuckDB's ``hash()`` and ``QUALIFY`` for bounding (both have PostgreSQL equivalents: ``hashtext``/
``md5`` and a sub-select) and, for load-time ranks, ``POSITIONAL JOIN`` (a backend without it passes
no ranks and gets the window).

Safety rules
------------
* Every literal (WHERE values, clamping bounds, the contribution limit) is a numbered parameter
  ``$n`` with an explicit ``CAST`` to the type its column calls for. Literals are never pasted into
  the SQL text, so no value can change the statement's structure.
* Every identifier is double-quoted (:func:`quote_ident`) and must be a declared column of the
  schema, so the statement only reads public, declared columns.
* The query was validated against the schema before it got here (:func:`accord.query.sql.validate`):
  an unknown column, an unbounded SUM or a literal of the wrong type reaching the renderer is a bug,
  raised as :class:`~accord.errors.InternalError`, never a second, differently worded refusal.

Semantics (the DP-critical part)
--------------------------------
1. **WHERE first.** The predicate keeps SQL three-valued logic: a row is kept only when the
   predicate is TRUE (a comparison with NULL is UNKNOWN, so it drops the row, and ``NOT`` of
   UNKNOWN is UNKNOWN).
2. **Per-person contribution bounding** (when ``needs_bounding``): rows whose privacy unit is NULL
   are dropped (they cannot be attributed to a person, so they cannot be bounded), and of the rows
   left each person keeps at most ``k = max_rows_per_person``: the first ``k`` in the order
   ``hash(<every declared column>), <every declared column but the person id>`` (columns by name;
   :func:`bounding_order`), i.e. the reference statement is
   ``QUALIFY row_number() OVER (PARTITION BY pid ORDER BY <that order>) <= k``.
   The order depends only on the row's own values, never on other persons' rows, on physical
   order or on randomness: adding or removing one person changes only that person's rows in the
   bounded table, which is what the sensitivity analysis in :mod:`node.dp` assumes (each person
   moves any count by at most ``k`` and any clamped sum by at most ``k * max(|lower|, |upper|)``).
   Ordering by a hash rather than by the values themselves avoids systematically keeping, say,
   each person's smallest income. Ties are broken by the values, so only rows that are identical
   in every declared column tie, and those are interchangeable. The order does not depend on the
   query, so it can be computed once at load. Bounding comes after WHERE so that a person's
   allowance is spent on the rows the query is actually about.
   The node bounds in every query (:mod:`accord.node.duckdb.engine` passes ``needs_bounding``
   always): skipping it when the load-time checks found nobody over the limit made the running
   time tell whether one person had one extra row. Cheaper statements give the same bounded
   table, each chosen from the query's shape alone:

   * **Load-time ranks** (``ranks``, a :class:`RowRanks` built by :mod:`accord.node.duckdb.catalog`): a table
     aligned row for row with the dataset holding each row's place in its person's order, joined
     to the dataset by ``POSITIONAL JOIN``. Without WHERE the bounded table is the rows of place
     ``<= k``: a filtered scan, no window. (With WHERE a person's kept rows are the first ``k``
     *that WHERE keeps*, which the places alone do not give; numbering only the rows of persons
     over the limit by their place was measured slower than the parallel window on 2 cores, so
     queries with WHERE number rows per query.) Used only when the ranks were built for this very
     privacy unit and ``k``.
   * When the query only counts rows (``COUNT(*)``, no GROUP BY) which rows a person keeps cannot
     matter, only how many: ``min(n, k)`` of the ``n`` rows the person has after WHERE, so the
     statement sums ``LEAST(count(*), k)`` per person instead of numbering rows.
3. **Measurements**: ``COUNT(*)`` counts bounded rows, ``COUNT(col)`` bounded rows where ``col``
   is not NULL, ``SUM(col)`` sums ``col`` clamped to ``[lower, upper]`` over the rows where ``col``
   is not NULL (NULLs contribute 0). The clamp is written ``CASE WHEN col < lower THEN lower WHEN
   col > upper THEN upper ELSE col END``: it equals ``LEAST(GREATEST(col, lower), upper)`` for
   every number (``lower <= upper`` is checked when the schema is built) and keeps NULL as NULL,
   which ``SUM`` skips (``GREATEST(NULL, lower)`` would be ``lower``), and it is faster in
   DuckDB. NaN clamps to ``upper`` (NaN compares above every number, in DuckDB and PostgreSQL),
   infinities to the nearer bound. An empty group's SUM is NULL in SQL and becomes 0 in
   :mod:`accord.node.duckdb.engine`.
   **Proven bounds**: when no value of ``col`` lies outside the declared ``[lower, upper]`` and
   none is NaN *by declaration* (``proven_bounds``: ``on_violation = "reject"``, under which a
   file breaking the bounds is refused; see :class:`accord.node.duckdb.catalog.LoadedDataset`;
   the engine re-checks a changed file before and after each query), the clamp maps every value
   to itself and is left out:
   ``SUM(col)``. Bounding and WHERE only remove rows, so the rows summed are a subset of the rows
   checked. The shortcut applies only when the proven bounds are the very bounds the query's
   schema declares; sensitivity (:mod:`node.dp`) is unchanged, since it never depended on the
   data.
4. **GROUP BY** the query's grouping columns; the engine aligns the result rows to the public group
   list, so groups that are not public are dropped and empty public groups get 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from accord.errors import InternalError
from accord.node.plan import MeasureKind, Measurement, distinct_measurements
from accord.query.model import (
    And,
    Between,
    Comparison,
    InList,
    IsNull,
    Literal,
    Not,
    Or,
    Predicate,
    Query,
)
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema

__all__ = ["RenderedQuery", "RowRanks", "bounding_order", "quote_ident", "render"]

SQL_TYPES = {
    ColumnType.INTEGER: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.STRING: "VARCHAR",
}
"""The canonical SQL type of each column type (what the catalog exposes)."""

_INT64 = (-(2**63), 2**63 - 1)


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class RenderedQuery:
    """The SQL text, its parameters (``$1`` is ``params[0]``), and what each output column holds:
    the first ``len(group_by)`` columns are the group key, then one per measurement."""

    sql: str
    params: tuple[object, ...]
    group_by: tuple[str, ...]
    measurements: tuple[Measurement, ...]


@dataclass(frozen=True)
class RowRanks:
    """A table aligned row for row with a dataset's relation (``relation POSITIONAL JOIN table``
    pairs each row with its own entry): ``rank`` is the row's place, from 1, in its person's
    bounding order (:func:`bounding_order`), capped at ``k + 1`` (only ``rank <= k`` is ever
    asked), NULL for a row without a person id. Names are quoted."""

    table: str
    rank: str
    privacy_unit: str
    k: int


def bounding_order(schema: DatasetSchema) -> str:
    """The ORDER BY list that decides which rows a person keeps (module docstring, step 2):
    ``hash`` of every declared column, then every declared column but the person id (the
    partition key, constant within a partition), all by name."""
    names = sorted(c.name for c in schema.columns)
    cols = [quote_ident(n) for n in names]
    ties = [quote_ident(n) for n in names if n != schema.privacy_unit]
    return ", ".join([f"hash({', '.join(cols)})", *ties])


class _Params:
    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object, sql_type: str) -> str:
        self.values.append(value)
        return f"CAST(${len(self.values)} AS {sql_type})"


def render(
    query: Query,
    schema: DatasetSchema,
    needs_bounding: bool,
    relation: str,
    proven_bounds: Mapping[str, tuple[int | float, int | float]] | None = None,
    ranks: RowRanks | None = None,
    persons: tuple[str, str] | None = None,
    support: bool = False,
) -> RenderedQuery:
    """One SELECT over ``relation`` (an already-quoted table or view name) computing every distinct
    measurement of ``query`` per group. ``proven_bounds`` (column → ``(lower, upper)``) names the
    columns declared (and enforced at load) to lie within those bounds, so their clamp is skipped;
    ``ranks`` (when bounding) the load-time ranks of ``relation``'s rows. See the module docstring
    for the semantics. ``persons`` (``("include" | "exclude", quoted table)``) keeps only, or
    leaves out, the people whose privacy unit is in the table's ``person`` column, before WHERE and
    bounding (consent: a person left out counts nowhere). ``support`` adds each group's
    ``COUNT(*)`` (:data:`~accord.node.plan.SUPPORT`)."""
    params = _Params()
    for name in query.columns_read:
        _spec(schema, name)
    where = _predicate(query.where, schema, params) if query.where is not None else None

    measurements = distinct_measurements(query, support)
    select = [quote_ident(g) for g in query.group_by]
    for m in measurements:
        select.append(_measure(m, schema, params, proven_bounds or {}))

    pid = quote_ident(schema.privacy_unit)
    consent = None
    if persons is not None:
        mode, table = persons
        consent = f"{pid} {'NOT ' if mode == 'exclude' else ''}IN (SELECT person FROM {table})"
    conditions = [c for c in (consent, where) if c is not None]
    source = relation
    if needs_bounding:
        read = ", ".join(quote_ident(c) for c in sorted(query.columns_read | {schema.privacy_unit}))
        keep = params.add(schema.max_rows_per_person, "BIGINT")
        counting = not query.group_by and all(
            m.kind is MeasureKind.COUNT and m.column is None for m in measurements
        )
        ranked = (
            ranks is not None
            and where is None
            and ranks.privacy_unit == schema.privacy_unit
            and ranks.k == schema.max_rows_per_person
        )
        if ranked:
            assert ranks is not None
            kept = " AND ".join([f"{ranks.rank} <= {keep}", *([consent] if consent else [])])
            source = f"(SELECT {read} FROM {relation} POSITIONAL JOIN {ranks.table} WHERE {kept}) AS bounded"
        else:
            inner_where = _where([f"{pid} IS NOT NULL", consent, where])
            if counting:
                # Each person contributes min(rows after WHERE, k), whichever rows are kept.
                per_person = f"(SELECT count(*) AS n FROM {relation}{inner_where} GROUP BY {pid}) AS persons"
                counts = ", ".join(f"sum(LEAST(n, {keep}))" for _ in measurements)
                return RenderedQuery(
                    f"SELECT {counts} FROM {per_person}", tuple(params.values), query.group_by, measurements
                )
            place = f"row_number() OVER (PARTITION BY {pid} ORDER BY {bounding_order(schema)})"
            source = f"(SELECT {read} FROM {relation}{inner_where} QUALIFY {place} <= {keep}) AS bounded"
        conditions = []
    sql = f"SELECT {', '.join(select)} FROM {source}"
    if conditions:
        sql += f" WHERE {' AND '.join(conditions)}"
    if query.group_by:
        sql += f" GROUP BY {', '.join(quote_ident(g) for g in query.group_by)}"
    return RenderedQuery(sql, tuple(params.values), query.group_by, measurements)


def _where(conditions: list[str | None]) -> str:
    present = [c for c in conditions if c is not None]
    return f" WHERE {' AND '.join(present)}" if present else ""


def _spec(schema: DatasetSchema, name: str) -> ColumnSpec:
    """The declared column (validation, before rendering, refused every other name)."""
    spec = schema.column(name)
    if spec is None:
        raise InternalError(f"column {name!r} of dataset {schema.name!r} reached the renderer unvalidated")
    return spec


def _measure(
    m: Measurement,
    schema: DatasetSchema,
    params: _Params,
    proven_bounds: Mapping[str, tuple[int | float, int | float]],
) -> str:
    if m.column is None:
        return "count(*)"
    col = quote_ident(m.column)
    if m.kind is MeasureKind.COUNT:
        return f"count({col})"
    spec = _spec(schema, m.column)
    if not spec.type.numeric or spec.lower is None or spec.upper is None:
        raise InternalError(f"SUM of {m.column!r} reached the renderer without declared bounds")
    proven = proven_bounds.get(m.column)
    if proven is not None and proven == (spec.lower, spec.upper):
        # The declaration (enforced at load) keeps every value inside these very bounds (module
        # docstring, "Proven bounds"): the clamp is the identity. SUM skips NULLs by itself.
        return f"sum({col})"
    sql_type = SQL_TYPES[spec.type]
    lo, hi = params.add(spec.lower, sql_type), params.add(spec.upper, sql_type)
    # A NULL falls through to ELSE and stays NULL, so SUM skips it (unlike GREATEST(NULL, lo),
    # which is lo); NaN compares above every number and clamps to the upper bound.
    return f"sum(CASE WHEN {col} < {lo} THEN {lo} WHEN {col} > {hi} THEN {hi} ELSE {col} END)"


def _predicate(p: Predicate, schema: DatasetSchema, params: _Params) -> str:
    if isinstance(p, And):
        return (
            "(" + " AND ".join(_predicate(o, schema, params) for o in p.operands) + ")"
            if p.operands
            else "TRUE"
        )
    if isinstance(p, Or):
        return (
            "(" + " OR ".join(_predicate(o, schema, params) for o in p.operands) + ")"
            if p.operands
            else "FALSE"
        )
    if isinstance(p, Not):
        return f"(NOT {_predicate(p.operand, schema, params)})"
    spec = _spec(schema, p.column)
    col = quote_ident(p.column)
    if isinstance(p, IsNull):
        return f"({col} IS {'NOT ' if p.negated else ''}NULL)"
    if isinstance(p, Comparison):
        return f"({col} {p.op.value} {_literal(p.value, spec, params)})"
    if isinstance(p, Between):
        lo, hi = _literal(p.low, spec, params), _literal(p.high, spec, params)
        return f"({col} {'NOT ' if p.negated else ''}BETWEEN {lo} AND {hi})"
    if isinstance(p, InList):
        if not p.values:  # x IN () is FALSE and x NOT IN () is TRUE, even for NULL x
            return "TRUE" if p.negated else "FALSE"
        items = ", ".join(_literal(v, spec, params) for v in p.values)
        return f"({col} {'NOT ' if p.negated else ''}IN ({items}))"
    raise TypeError(f"not a predicate: {p!r}")


def _literal(value: Literal, spec: ColumnSpec, params: _Params) -> str:
    """A bound parameter cast to the type the column calls for, so comparisons never make DuckDB
    cast the *column* (which could fail on, and report, a data value)."""
    t = spec.type
    if value is None:
        return params.add(None, SQL_TYPES[t])
    if t.numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
            return params.add(value, "BIGINT")
        return params.add(float(value), "DOUBLE")  # a float literal keeps its fraction: age < 2.5
    if t is ColumnType.BOOLEAN and isinstance(value, bool):
        return params.add(value, "BOOLEAN")
    if t is ColumnType.STRING and isinstance(value, str):
        return params.add(value, "VARCHAR")
    raise InternalError(
        f"a {type(value).__name__} literal for {t.value} column {spec.name!r} reached the renderer"
    )
