"""Semantic checks of a parsed query against public metadata (private to :mod:`accord.query.sql`)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from accord.errors import InvalidQuery, NotFound, Violation
from accord.query._sql_lex import refuse
from accord.query._sql_limits import (
    MAX_GROUPS,
    MAX_RELEASE_BYTES,
    release_size_bound,
    sum_range_problems,
)
from accord.query.model import (
    AggregateFunction,
    And,
    Between,
    Comparison,
    GroupColumn,
    InList,
    Literal,
    Not,
    Or,
    Predicate,
    Query,
)
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema

# ---- semantic checks -------------------------------------------------------------------------


def _suggest(name: str, known: Sequence[str]) -> str:
    close = [k for k in known if k.lower() == name.lower()]
    close += [k for k in difflib.get_close_matches(name, known, n=3) if k not in close]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def unknown_name(name: str, known: Sequence[str], what: str) -> str:
    """``dataset 'x' does not exist (did you mean y?); available: ...``"""
    return f"{what} {name!r} does not exist{_suggest(name, known)}; available: {', '.join(known) or 'none'}"


def _fits(value: Literal, spec: ColumnSpec) -> bool:
    if spec.type is ColumnType.BOOLEAN:
        return isinstance(value, bool)
    if spec.type is ColumnType.STRING:
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if spec.type is ColumnType.INTEGER:
        return isinstance(value, int)
    return isinstance(value, (int, float))


_TYPE_HINT = {
    ColumnType.INTEGER: "an integer such as 18",
    ColumnType.FLOAT: "a number such as 2.5",
    ColumnType.BOOLEAN: "TRUE or FALSE",
    ColumnType.STRING: "a quoted string such as 'abc'",
}


def _where_literals(predicate: Predicate | None) -> list[tuple[str, Literal]]:
    out: list[tuple[str, Literal]] = []
    stack: list[Predicate] = [] if predicate is None else [predicate]
    while stack:
        p = stack.pop()
        if isinstance(p, (And, Or)):
            stack.extend(p.operands)
        elif isinstance(p, Not):
            stack.append(p.operand)
        elif isinstance(p, Comparison):
            out.append((p.column, p.value))
        elif isinstance(p, InList):
            out.extend((p.column, v) for v in p.values)
        elif isinstance(p, Between):
            out.extend([(p.column, p.low), (p.column, p.high)])
    return out


def validate(query: Query, schema: DatasetSchema) -> None:
    """Check ``query`` against ``schema`` (public metadata only); raise if it cannot be answered.

    Unknown columns raise :class:`NotFound`; every other problem raises :class:`InvalidQuery`
    listing all problems found.
    """
    if query.dataset != schema.name:
        refuse(
            f"the query reads dataset {query.dataset!r} but was checked against {schema.name!r}",
            "from",
            "dataset mismatch",
            NotFound,
        )
    names = [c.name for c in schema.columns]
    used: list[tuple[str, str]] = [(c, "group_by") for c in query.group_by]
    used += [(o.column, "select") for o in query.outputs if isinstance(o, GroupColumn)]
    used += [(a.column, "select") for a in query.aggregates if a.column is not None]
    used += [(c, "where") for c in sorted(query.columns_read - {u for u, _ in used})]
    missing: dict[str, str] = {}  # column -> the first clause naming it
    for column, field in used:
        if schema.column(column) is None:
            missing.setdefault(column, field)
    if missing:
        listed = ", ".join(f"{c!r}{_suggest(c, names)}" for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise NotFound(
            f"dataset {schema.name!r} has no {noun} {listed}; available: {', '.join(names)}",
            tuple(Violation(f, f"unknown column {c}") for c, f in missing.items()),
        )
    problems: list[tuple[str, str, str]] = []  # (field, description, message)
    for column, field in dict.fromkeys(used):
        if column == schema.privacy_unit:
            problems.append(
                (
                    field,
                    f"privacy unit {column}",
                    f"{column} identifies persons (the privacy unit of {schema.name}) and cannot be used "
                    "in a query; counts are already bounded per person, so remove it",
                )
            )
    for agg in query.aggregates:
        spec = schema.column(agg.column) if agg.column is not None else None
        if spec is None or agg.function is AggregateFunction.COUNT or spec.name == schema.privacy_unit:
            continue
        fn = f"{agg.function.value}({spec.name})"
        if not spec.type.numeric:
            problems.append(
                (
                    "select",
                    f"{fn} of a {spec.type.value} column",
                    f"{fn}: {spec.name} is a {spec.type.value} column; SUM and AVG need a numeric column "
                    f"(use COUNT({spec.name}) or GROUP BY it instead)",
                )
            )
        elif not spec.bounded:
            problems.append(
                (
                    "select",
                    f"{fn} of an unbounded column",
                    f"{fn}: {spec.name} has no declared bounds; the node operator must declare "
                    f"lower/upper bounds for {spec.name} in the node config before it can be summed "
                    "or averaged",
                )
            )
    groups = 1
    for column in query.group_by:
        spec = schema.column(column)
        assert spec is not None
        if spec.categories is None:
            if column != schema.privacy_unit:
                problems.append(
                    (
                        "group_by",
                        f"{column} has no public categories",
                        f"GROUP BY {column}: the column has no public list of categories; the node operator "
                        f"must declare categories for {column} in the node config, or filter on it "
                        "with WHERE",
                    )
                )
        else:
            groups *= len(spec.categories)
    if groups > MAX_GROUPS:
        problems.append(
            (
                "group_by",
                f"{groups} groups",
                f"GROUP BY {', '.join(query.group_by)} makes {groups} groups; the limit is {MAX_GROUPS}. "
                "Group by fewer columns",
            )
        )
    elif release_size_bound(query, schema) > MAX_RELEASE_BYTES:
        problems.append(
            (
                "select",
                "release too large",
                f"{groups} groups of {len(query.aggregates)} aggregate(s) would not fit one answer (at most "
                f"{MAX_RELEASE_BYTES // 1024} KiB of groups and numbers); group by fewer columns or "
                "ask for fewer aggregates per query",
            )
        )
    problems += sum_range_problems(query, schema)
    for column, value in _where_literals(query.where):
        spec = schema.column(column)
        assert spec is not None
        if not _fits(value, spec):
            problems.append(
                (
                    "where",
                    f"{column} compared with {value!r}",
                    f"{column} is a {spec.type.value} column but is compared with {value!r}; "
                    f"compare it with {_TYPE_HINT[spec.type]}",
                )
            )
    if problems:
        unique = list(dict.fromkeys(problems))
        message = "; ".join(dict.fromkeys(m for _, _, m in unique))
        raise InvalidQuery(message, tuple(Violation(f, d) for f, d, _ in unique))
