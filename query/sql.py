"""The SQL subset Accord answers, parsed into the :class:`accord.query.model.Query` tree.

The accepted language is::

    SELECT [group columns,] aggregates FROM dataset [WHERE condition] [GROUP BY columns] [;]

* aggregates: ``COUNT(*)``, ``COUNT(col)``, ``SUM(col)``, ``AVG(col)``, each with an optional
  ``AS alias``. Without an alias the output column is named ``count`` for ``COUNT(*)`` and
  ``<function>_<column>`` in lower case for the others (``count_income``, ``sum_income``,
  ``avg_income``; the column part is kept as written). A selected group column is named after
  the column unless it has an alias.
* condition: ``col <op> literal`` (or ``literal <op> col``, normalised to the column on the left
  with the operator flipped) for ``= <> != < <= > >=``; ``col [NOT] IN (literals)``;
  ``col [NOT] BETWEEN a AND b``; ``col IS [NOT] NULL``; ``AND``, ``OR``, ``NOT`` and parentheses.
  ``a NOT IN``, ``a NOT BETWEEN`` and ``a IS NOT NULL`` (and the equivalent ``NOT a IN ...``
  written without parentheses) become the ``negated=True`` form; ``NOT (...)`` becomes
  :class:`~accord.query.model.Not`. Chains of the same operator written without parentheses are
  flattened (``a AND b AND c`` is one :class:`~accord.query.model.And` with three operands).
* group columns: every ``GROUP BY`` column is selected exactly once (aliases allowed), in any
  order; the parsed ``group_by`` follows the SELECT order, which is the order of every released
  group key. A ``GROUP BY`` column left out of SELECT, or selected twice, is refused.
* literals: integers (64-bit), finite floats, negative numbers, ``'strings'``, ``TRUE``/``FALSE``.
* keywords are case-insensitive; identifiers (dataset and column names, aliases) keep the case in
  which they are written and are matched exactly against the catalog. Double-quoted identifiers
  are allowed (``"Sex"``).

Everything else is refused with :class:`~accord.errors.InvalidQuery` whose message names the
construct and says what to write instead. Hostile input is refused before sqlglot parses it, in
linear time (:data:`MAX_SQL_LENGTH`, :data:`MAX_NESTING`, :data:`MAX_TOKENS`,
:data:`MAX_LIST_ITEMS`, :data:`MAX_PREDICATES`); :data:`MAX_IN_LIST` and the exact predicate count
are checked on the parsed tree. DuckDB's ``FROM dataset SELECT ...`` order is accepted as well.
:func:`validate` then checks a parsed query against a dataset's public metadata, and
:func:`compile_query` does both. Messages depend only on the query and the metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlglot import exp

from accord.errors import NotFound
from accord.query._sql_check import unknown_name, validate
from accord.query._sql_lex import (
    AGGS,
    MAX_IN_LIST,
    MAX_LIST_ITEMS,
    MAX_NESTING,
    MAX_PREDICATES,
    MAX_SQL_LENGTH,
    MAX_TOKENS,
    SHAPE,
    prescan,
    refuse,
    run_sqlglot,
)
from accord.query._sql_limits import MAX_GROUPS, MAX_RELEASE_BYTES, release_size_bound
from accord.query._sql_names import (
    ALLOWED,
    CONSTRUCTS,
    SELECT_CLAUSES,
    SELECT_EXTRAS,
    SET_OPERATIONS,
    column_name,
    describe,
    identifier,
    refuse_node,
    snippet,
)
from accord.query._sql_where import WhereConverter
from accord.query.model import (
    Aggregate,
    AggregateFunction,
    GroupColumn,
    OutputColumn,
    Query,
)
from accord.query.schema import DatasetSchema

__all__ = [
    "MAX_GROUPS",
    "MAX_IN_LIST",
    "MAX_LIST_ITEMS",
    "MAX_NESTING",
    "MAX_PREDICATES",
    "MAX_RELEASE_BYTES",
    "MAX_SQL_LENGTH",
    "MAX_TOKENS",
    "compile_query",
    "parse",
    "release_size_bound",
    "validate",
]

log = logging.getLogger(__name__)

# ---- the statement ---------------------------------------------------------------------------


def parse(text: str) -> Query:
    """Parse ``text`` (the subset described in the module docstring) into a :class:`Query`.

    Only syntax is checked here; :func:`validate` checks the query against a dataset's metadata.
    Raises :class:`InvalidQuery` for anything outside the subset, and nothing else.
    """
    if not isinstance(text, str):
        refuse("the query must be text", "sql", "not a string")
    prescan(text)
    tree = run_sqlglot(text)
    try:
        return _statement(tree)
    except RecursionError:
        refuse(f"the query is nested too deeply; the limit is {MAX_NESTING} levels", "sql", "too deep")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        # A tree shape this module does not expect: a bug here or in sqlglot, never the caller's
        # data. Refuse rather than let an unexpected exception escape for some input text.
        log.warning("unexpected sqlglot tree for a query", exc_info=True)
        refuse(f"the query could not be understood; write {SHAPE}", "sql", "unsupported syntax")


def _statement(tree: exp.Expr) -> Query:
    if isinstance(tree, exp.Command):
        word = str(tree.this or "").upper()[:30] or "this statement"
        refuse(
            f"{word} is not supported: Accord only answers SELECT queries; write {SHAPE}",
            "sql",
            f"{word} statement",
        )
    if isinstance(tree, exp.SetOperation):
        refuse(
            f"{SET_OPERATIONS} are not supported; run each SELECT as its own query and combine the answers",
            "sql",
            "set operation",
        )
    if isinstance(tree, exp.Subquery):
        refuse(f"a parenthesised query is not supported; write a plain {SHAPE}", "sql", "subquery")
    if not isinstance(tree, exp.Select):
        word = tree.key.upper()
        refuse(
            f"{word} statements are not supported: Accord only answers SELECT queries; write {SHAPE}",
            "sql",
            f"{word} statement",
        )
    for key, value in tree.args.items():
        if key in SELECT_CLAUSES or not value:
            continue
        name, field = SELECT_EXTRAS.get(key, (key.upper(), "sql"))
        if isinstance(value, exp.Expr):
            name, advice = describe(value)
        else:
            advice = f"write {SHAPE}"
        if key == "joins":
            name, advice = CONSTRUCTS[exp.Join]
            name = "JOIN (including comma-separated FROM lists)"
        refuse(f"{name} is not supported; {advice}", field, f"{name} not supported")
    for key, field in SELECT_CLAUSES.items():
        value = tree.args.get(key)
        for part in value if isinstance(value, list) else [value]:
            if part is None:
                continue
            if not isinstance(part, exp.Expr):
                refuse(f"the query could not be understood; write {SHAPE}", field, "unexpected syntax")
            for node in part.walk():
                if not isinstance(node, ALLOWED) or isinstance(node, exp.Select):
                    refuse_node(node, field)
    dataset = _dataset(tree.args.get("from_"))
    group_by = _group_by(tree.args.get("group"))
    outputs = _outputs(tree.expressions, group_by)
    where_node = tree.args.get("where")
    where = WhereConverter().convert(where_node.this) if isinstance(where_node, exp.Where) else None
    return Query(dataset=dataset, outputs=outputs, group_by=_selection_order(outputs, group_by), where=where)


def _selection_order(outputs: tuple[OutputColumn, ...], group_by: tuple[str, ...]) -> tuple[str, ...]:
    """The GROUP BY columns in the order they are selected, when every one is selected once (the
    order of a GROUP BY list changes no group; released keys follow the SELECT list). Otherwise
    ``group_by`` as written, which :class:`Query` refuses with what to write instead."""
    selected = tuple(o.column for o in outputs if isinstance(o, GroupColumn))
    return selected if sorted(selected) == sorted(group_by) else group_by


def _dataset(node: object) -> str:
    if not isinstance(node, exp.From):
        refuse(f"the query has no FROM clause; write {SHAPE}", "from", "missing FROM")
    table = node.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        what = snippet(table) if isinstance(table, exp.Expr) else "it"
        refuse(
            f"FROM {what} is not supported; name one dataset, for example FROM citizens",
            "from",
            "not a dataset name",
        )
    for key, value in table.args.items():
        if key == "this" or not value:
            continue
        if key in ("db", "catalog"):
            refuse(
                f"the qualified dataset name {snippet(table)} is not supported; name the dataset alone",
                "from",
                "qualified name",
            )
        if key == "alias":
            refuse(
                f"the table alias in FROM {snippet(table)} is not supported; remove it and write "
                "column names without a prefix",
                "from",
                "table alias",
            )
        refuse(f"{key.upper()} in FROM is not supported; name one dataset only", "from", f"{key}")
    return identifier(table.this, "from")


def _group_by(node: object) -> tuple[str, ...]:
    if not isinstance(node, exp.Group):
        return ()
    for key, value in node.args.items():
        if key != "expressions" and value:
            word = "GROUP BY ALL" if key == "all" else key.upper().replace("_", " ")
            refuse(
                f"{word} is not supported in GROUP BY; list the grouping columns by name",
                "group_by",
                f"{word}",
            )
    names: list[str] = []
    for expr in node.expressions:
        name = column_name(expr, "group_by", "each GROUP BY item (expressions and positions are not allowed)")
        if name in names:
            refuse(f"GROUP BY lists {name} twice; list it once", "group_by", f"duplicate {name}")
        names.append(name)
    return tuple(names)


_FUNCTIONS: dict[type[exp.Expression], AggregateFunction] = {
    exp.Count: AggregateFunction.COUNT,
    exp.Sum: AggregateFunction.SUM,
    exp.Avg: AggregateFunction.AVG,
}


def _outputs(items: Sequence[exp.Expression], group_by: tuple[str, ...]) -> tuple[OutputColumn, ...]:
    out: list[OutputColumn] = []
    for item in items:
        alias: str | None = None
        node = item
        if isinstance(node, exp.Alias):
            alias_node = node.args.get("alias")
            if not isinstance(alias_node, exp.Identifier):
                refuse(f"the alias in {snippet(item)} is not a name", "select", "bad alias")
            alias = identifier(alias_node, "select")
            node = node.this
        if isinstance(node, exp.Column):
            name = column_name(node, "select", "a selected column")
            if name not in group_by:
                refuse(
                    f"the column {name} is selected but not grouped; add it to GROUP BY or wrap it in "
                    f"an aggregate such as COUNT({name})",
                    "select",
                    f"bare column {name}",
                )
            out.append(GroupColumn(name, alias or name))
            continue
        if isinstance(node, exp.Star):
            refuse(f"SELECT * is not supported; {CONSTRUCTS[exp.Star][1]}", "select", "SELECT *")
        function = _FUNCTIONS.get(type(node))
        if function is None:
            refuse(
                f"{snippet(node)} is not supported in SELECT; select only grouping columns and "
                f"aggregates: {AGGS}",
                "select",
                f"not an aggregate: {snippet(node)}",
            )
        out.append(_aggregate(node, function, alias))
    return tuple(out)


def _aggregate(node: exp.Expression, function: AggregateFunction, alias: str | None) -> Aggregate:
    fn = function.value
    if node.args.get("expressions"):
        refuse(f"{fn} takes one column; write one aggregate per column", "select", f"{fn} with many columns")
    arg = node.this
    while isinstance(arg, exp.Paren):
        arg = arg.this
    if isinstance(arg, exp.Star) and function is AggregateFunction.COUNT:
        return Aggregate(function, None, alias or "count")
    if arg is None or isinstance(arg, exp.Star):
        hint = "COUNT(*) or COUNT(column)" if function is AggregateFunction.COUNT else f"{fn}(income)"
        refuse(f"{snippet(node)} needs a column; write {hint}", "select", f"{fn} without a column")
    if not isinstance(arg, exp.Column):
        refuse(
            f"the argument of {snippet(node)} must be a plain column, not {snippet(arg)}; "
            f"write {fn}(column) and compute anything else from the released answer",
            "select",
            f"{fn} of an expression",
        )
    column = column_name(arg, "select", f"the argument of {fn}")
    return Aggregate(function, column, alias or f"{fn.lower()}_{column}")


def compile_query(text: str, catalog: Mapping[str, DatasetSchema]) -> Query:
    """Parse ``text``, look its dataset up in ``catalog`` and :func:`validate` it."""
    query = parse(text)
    schema = catalog.get(query.dataset)
    if schema is None:
        refuse(
            unknown_name(query.dataset, sorted(catalog), "dataset"),
            "from",
            f"unknown dataset {query.dataset}",
            NotFound,
        )
    validate(query, schema)
    return query
