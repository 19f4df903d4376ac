"""Names and advice for SQL constructs outside the subset, and plain-name helpers (private to
:mod:`accord.query.sql`)."""

from __future__ import annotations

from typing import NoReturn

from sqlglot import exp
from sqlglot.errors import SqlglotError

from accord.query._sql_lex import AGGS, SHAPE, refuse

# ---- naming refused constructs ---------------------------------------------------------------

CONSTRUCTS: dict[type[exp.Expression], tuple[str, str]] = {
    exp.Join: ("JOIN", "query one dataset at a time and combine the released answers yourself"),
    exp.Lateral: ("LATERAL", "query one dataset at a time"),
    exp.Subquery: ("a subquery", f"write a single {SHAPE}"),
    exp.Select: ("a subquery", f"write a single {SHAPE}"),
    exp.Exists: ("EXISTS (subquery)", "write a single SELECT and filter with WHERE on columns"),
    exp.With: ("WITH (common table expressions)", f"write the query as a single {SHAPE}"),
    exp.Distinct: (
        "DISTINCT",
        "Accord releases counts of rows, not of distinct values; use COUNT(*) with GROUP BY",
    ),
    exp.Window: ("a window function (OVER ...)", "use GROUP BY to get one aggregate per group"),
    exp.Filter: ("FILTER (WHERE ...)", "move the condition into the query's WHERE clause"),
    exp.Order: ("ORDER BY", "rows come in the order of the public categories; sort the answer yourself"),
    exp.Ordered: ("ORDER BY", "rows come in the order of the public categories; sort the answer yourself"),
    exp.Limit: ("LIMIT", "every group is always released; drop LIMIT and filter the answer yourself"),
    exp.Offset: ("OFFSET", "every group is always released; drop OFFSET and filter the answer yourself"),
    exp.Fetch: ("FETCH", "every group is always released; drop FETCH and filter the answer yourself"),
    exp.Having: (
        "HAVING",
        "filtering on aggregates is not allowed; filter rows with WHERE or filter the released answer",
    ),
    exp.Qualify: ("QUALIFY", "filter rows with WHERE"),
    exp.Star: ("SELECT *", "Accord releases aggregates only; select COUNT(*) or another aggregate"),
    exp.Case: ("CASE", "use WHERE conditions, or GROUP BY a column with public categories"),
    exp.If: ("IF/CASE", "use WHERE conditions, or GROUP BY a column with public categories"),
    exp.Cast: ("a type cast", "compare the column with a literal of the column's own type"),
    exp.Like: ("LIKE", "use = or IN with exact values"),
    exp.ILike: ("ILIKE", "use = or IN with exact values"),
    exp.Placeholder: ("a query parameter", "write the literal value into the query"),
    exp.Tuple: ("a tuple", "compare one column at a time"),
    exp.Array: ("an array literal", "use IN (value, ...)"),
    exp.Struct: ("a struct literal", "compare a column with a plain literal"),
    exp.Null: ("NULL as a value", "use IS NULL or IS NOT NULL"),
    exp.Interval: ("INTERVAL", "compare a column with a plain literal"),
    exp.RawString: ("a $$-quoted string", "write the string in single quotes"),
    exp.ByteString: ("an E'...' string", "write the string in plain single quotes"),
    exp.National: ("an N'...' string", "write the string in plain single quotes"),
    exp.Anonymous: ("a function", f"use only {AGGS}"),
    exp.TableAlias: ("a table alias", "remove it and write column names without a prefix"),
    exp.Rollup: ("ROLLUP", "list the grouping columns by name; totals can be added up from the answer"),
    exp.Cube: ("CUBE", "list the grouping columns by name; totals can be added up from the answer"),
    exp.GroupingSets: ("GROUPING SETS", "run one query per grouping"),
    exp.Min: ("MIN", f"MIN and MAX reveal individual values; use {AGGS}"),
    exp.Max: ("MAX", f"MIN and MAX reveal individual values; use {AGGS}"),
}
SET_OPERATIONS = "UNION, INTERSECT and EXCEPT"
_ARITHMETIC = (
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.IntDiv,
    exp.Pow,
    exp.DPipe,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseLeftShift,
    exp.BitwiseRightShift,
)
SELECT_CLAUSES = {"expressions": "select", "from_": "from", "where": "where", "group": "group_by"}
SELECT_EXTRAS = {
    "with_": ("WITH (common table expressions)", "with"),
    "distinct": ("DISTINCT", "select"),
    "joins": ("JOIN", "from"),
    "laterals": ("LATERAL", "from"),
    "having": ("HAVING", "having"),
    "qualify": ("QUALIFY", "qualify"),
    "order": ("ORDER BY", "order_by"),
    "limit": ("LIMIT", "limit"),
    "offset": ("OFFSET", "limit"),
    "windows": ("WINDOW", "window"),
    "sample": ("USING SAMPLE", "from"),
}
ALLOWED = (
    exp.Select,
    exp.From,
    exp.Table,
    exp.Identifier,
    exp.Column,
    exp.Alias,
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Star,
    exp.Where,
    exp.Group,
    exp.EQ,
    exp.NEQ,
    exp.LT,
    exp.LTE,
    exp.GT,
    exp.GTE,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Null,
    exp.Not,
    exp.And,
    exp.Or,
    exp.Paren,
    exp.Literal,
    exp.Boolean,
    exp.Neg,
)


_SNIPPET_NODES = 200
"""Largest subtree rendered back to SQL for a message; a bigger one is named by its type only."""


def snippet(node: exp.Expr) -> str:
    # Messages show at most 60 characters, but rendering costs the whole subtree: a hostile query
    # at the token limit (``a IS NULL IS NULL ...``) would spend most of a second rendering one
    # deep tree, so big subtrees are counted (iteratively, stopping early) and not rendered.
    for count, _ in enumerate(node.walk(), 1):
        if count > _SNIPPET_NODES:
            return type(node).__name__
    try:
        text = node.sql(dialect="duckdb")
    except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
        return type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def describe(node: exp.Expr) -> tuple[str, str]:
    """(the construct's name, what to do instead) for a node outside the subset."""
    for cls, described in CONSTRUCTS.items():
        if type(node) is cls:
            if cls is exp.Anonymous:
                return f"function {node.name.upper()}()", described[1]
            return described
    if isinstance(node, exp.SetOperation):
        return SET_OPERATIONS, "run each SELECT as its own query and combine the answers yourself"
    if isinstance(node, (*_ARITHMETIC, exp.BitwiseNot)):
        return f"arithmetic ({snippet(node)})", "compute it from the released aggregates yourself"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}()", f"use only {AGGS}"
    if isinstance(node, exp.Predicate):
        return f"the operator in {snippet(node)}", "use =, <>, <, <=, >, >=, IN, BETWEEN or IS NULL"
    return f"{type(node).__name__.upper()} ({snippet(node)})", f"write {SHAPE}"


def refuse_node(node: exp.Expr, field: str) -> NoReturn:
    name, advice = describe(node)
    refuse(f"{name} is not supported in {_field_name(field)}; {advice}", field, f"{name} not supported")


def _field_name(field: str) -> str:
    return {
        "select": "SELECT",
        "from": "FROM",
        "where": "WHERE",
        "group_by": "GROUP BY",
        "sql": "the query",
    }.get(field, "the query")


def identifier(node: exp.Identifier, field: str) -> str:
    name = str(node.this)
    if not name:
        refuse("an empty quoted name is not allowed; name a column or dataset", field, "empty name")
    return name


def column_name(node: exp.Expression, field: str, context: str) -> str:
    """The name of a plain (unqualified) column reference, or a refusal naming ``context``."""
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Column):
        refuse(
            f"{context} must be a plain column name, not {snippet(node)}",
            field,
            f"expression instead of a column: {snippet(node)}",
        )
    if not isinstance(node.this, exp.Identifier):
        refuse(
            f"{snippet(node)} is not supported; {CONSTRUCTS[exp.Star][1]}",
            field,
            "star",
        )
    if any(node.args.get(k) for k in ("table", "db", "catalog")):
        refuse(
            f"the qualified column {snippet(node)} is not supported; write the column name without a prefix",
            field,
            "qualified column",
        )
    return identifier(node.this, field)


def strip_parens(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node
