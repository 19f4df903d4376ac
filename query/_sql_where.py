"""WHERE-clause conversion for :mod:`accord.query.sql` (private)."""

from __future__ import annotations

import math
import re

from sqlglot import exp

from accord.query._sql_lex import (
    MAX_IN_LIST,
    MAX_PREDICATES,
    refuse,
)
from accord.query._sql_names import (
    CONSTRUCTS,
    column_name,
    snippet,
    strip_parens,
)
from accord.query.model import (
    And,
    Between,
    Comparison,
    ComparisonOp,
    InList,
    IsNull,
    Literal,
    Not,
    Or,
    Predicate,
)

# ---- WHERE -----------------------------------------------------------------------------------

_INT64 = 2**63
_OPS: dict[type[exp.Expression], ComparisonOp] = {
    exp.EQ: ComparisonOp.EQ,
    exp.NEQ: ComparisonOp.NE,
    exp.LT: ComparisonOp.LT,
    exp.LTE: ComparisonOp.LE,
    exp.GT: ComparisonOp.GT,
    exp.GTE: ComparisonOp.GE,
}
_FLIPPED = {
    ComparisonOp.EQ: ComparisonOp.EQ,
    ComparisonOp.NE: ComparisonOp.NE,
    ComparisonOp.LT: ComparisonOp.GT,
    ComparisonOp.LE: ComparisonOp.GE,
    ComparisonOp.GT: ComparisonOp.LT,
    ComparisonOp.GE: ComparisonOp.LE,
}


def _is_literal(node: exp.Expression) -> bool:
    node = strip_parens(node)
    if isinstance(node, exp.Neg):
        node = strip_parens(node.this)
    return isinstance(node, (exp.Literal, exp.Boolean, exp.Null))


def literal_value(node: exp.Expression) -> Literal:
    """A literal value: string, 64-bit integer, finite float or boolean (optionally negated)."""
    node = strip_parens(node)
    negative = False
    if isinstance(node, exp.Neg):
        negative = True
        node = strip_parens(node.this)
    if isinstance(node, exp.Null):
        refuse("NULL cannot be compared with =, IN or BETWEEN; use IS NULL or IS NOT NULL", "where", "NULL")
    if isinstance(node, exp.Boolean) and not negative:
        return bool(node.this)
    if not isinstance(node, exp.Literal) or (negative and node.is_string):
        refuse(
            f"{snippet(node)} is not a literal; use a number, a 'string', TRUE or FALSE",
            "where",
            f"not a literal: {snippet(node)}",
        )
    text = str(node.this)
    if node.is_string:
        return text
    value: int | float
    try:
        value = int(text) if re.fullmatch(r"\d+", text) else float(text)
    except ValueError:
        refuse(
            f"the number {text[:40]} could not be read; write a plain decimal number", "where", "bad number"
        )
    if isinstance(value, int) and not -_INT64 <= (-value if negative else value) < _INT64:
        refuse(
            f"the integer {text[:40]} is out of range; integers must fit in 64 bits, so write a value "
            "between -2^63 and 2^63-1",
            "where",
            "integer too big",
        )
    if isinstance(value, float) and not math.isfinite(value):
        refuse(
            f"the number {text[:40]} is out of range; write a finite number", "where", "float out of range"
        )
    return -value if negative else value


class WhereConverter:
    """Converts a WHERE tree, counting predicate nodes (AND/OR chains are flattened iteratively)."""

    def __init__(self) -> None:
        self.count = 0

    def _bump(self) -> None:
        self.count += 1
        if self.count > MAX_PREDICATES:
            refuse(
                f"the WHERE clause has more than {MAX_PREDICATES} conditions; simplify it "
                "(IN lists and BETWEEN replace long OR chains)",
                "where",
                "too many predicates",
            )

    def convert(self, node: exp.Expression) -> Predicate:
        node = strip_parens(node)
        if isinstance(node, (exp.And, exp.Or)):
            operands: list[exp.Expression] = []
            stack: list[exp.Expression] = [node]
            while stack:
                item = stack.pop()
                if type(item) is type(node):
                    stack.append(item.expression)
                    stack.append(item.this)
                else:
                    operands.append(item)
            self._bump()
            converted = tuple(self.convert(o) for o in operands)
            return And(converted) if isinstance(node, exp.And) else Or(converted)
        if isinstance(node, exp.Not):
            inner = node.this
            if isinstance(inner, (exp.In, exp.Between, exp.Is)):
                return self._leaf(inner, negated=True)
            self._bump()
            return Not(self.convert(inner))
        return self._leaf(node, negated=False)

    def _leaf(self, node: exp.Expression, negated: bool) -> Predicate:
        self._bump()
        if isinstance(node, exp.In):
            return self._in(node, negated)
        if isinstance(node, exp.Between):
            if node.args.get("symmetric"):
                refuse("BETWEEN SYMMETRIC is not supported; write BETWEEN low AND high", "where", "symmetric")
            column = column_name(node.this, "where", "the left side of BETWEEN")
            return Between(column, literal_value(node.args["low"]), literal_value(node.args["high"]), negated)
        if isinstance(node, exp.Is):
            column = column_name(node.this, "where", "the left side of IS")
            if not isinstance(node.expression, exp.Null):
                refuse(
                    f"IS {snippet(node.expression)} is not supported; use IS NULL, IS NOT NULL, or = TRUE",
                    "where",
                    "IS other than NULL",
                )
            return IsNull(column, negated)
        op = _OPS.get(type(node))
        if op is None:
            what = "a bare column" if isinstance(node, exp.Column) else snippet(node)
            refuse(
                f"{what} is not a condition; write column = literal, IN, BETWEEN or IS NULL "
                "(for a boolean column, write column = TRUE)",
                "where",
                f"not a condition: {snippet(node)}",
            )
        left, right = strip_parens(node.this), strip_parens(node.expression)
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            refuse(
                f"comparing two columns ({snippet(node)}) is not supported; compare a column with a literal",
                "where",
                "column-to-column comparison",
            )
        if _is_literal(left) and isinstance(right, exp.Column):
            left, right, op = right, left, _FLIPPED[op]
        if not isinstance(left, exp.Column) or not _is_literal(right):
            refuse(
                f"the comparison {snippet(node)} is not supported; compare one column with one literal, "
                "for example age >= 18",
                "where",
                f"unsupported comparison: {snippet(node)}",
            )
        return Comparison(column_name(left, "where", "a compared column"), op, literal_value(right))

    def _in(self, node: exp.In, negated: bool) -> InList:
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            refuse(
                CONSTRUCTS[exp.Subquery][0] + " in IN is not supported; list literal values", "where", "IN"
            )
        column = column_name(node.this, "where", "the left side of IN")
        values = node.expressions
        if not values:
            refuse(f"{column} IN () is empty; list at least one value", "where", "empty IN list")
        if len(values) > MAX_IN_LIST:
            refuse(
                f"the IN list for {column} has {len(values)} values; the limit is {MAX_IN_LIST}. "
                "Use BETWEEN for ranges or split the query",
                "where",
                "IN list too long",
            )
        return InList(column, tuple(literal_value(v) for v in values), negated)
