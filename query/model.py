"""The query model: an immutable tree that both the coordinator and the nodes speak.

A query is parsed from SQL (see :mod:`accord.query.sql`) into these frozen dataclasses. Nothing in
here knows about gRPC, DuckDB or OpenDP: the tree is rendered to an engine by the node and
converted to/from the wire by :mod:`accord.protos.convert`.
"""

from __future__ import annotations

import contextlib
import enum
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

from accord.errors import InvalidQuery, Violation

# A literal that may appear in a WHERE clause or as a public category / group key.
Literal: TypeAlias = str | int | float | bool | None


class AggregateFunction(enum.Enum):
    COUNT = "COUNT"
    SUM = "SUM"
    AVG = "AVG"


class ComparisonOp(enum.Enum):
    EQ = "="
    NE = "<>"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True)
class Aggregate:
    """One aggregate in the SELECT list. ``column`` is None only for ``COUNT(*)``."""

    function: AggregateFunction
    column: str | None
    alias: str

    def __post_init__(self) -> None:
        if self.column is None and self.function is not AggregateFunction.COUNT:
            raise InvalidQuery(
                f"{self.function.value}(*) is not an aggregate; name a numeric column, "
                f"for example {self.function.value}(income)",
                (Violation("select", "aggregate needs a column"),),
            )
        if not self.alias:
            raise InvalidQuery("every output column needs a name", (Violation("select", "empty alias"),))


@dataclass(frozen=True)
class GroupColumn:
    """A grouping column that appears in the SELECT list."""

    column: str
    alias: str


OutputColumn: TypeAlias = GroupColumn | Aggregate


# ---- WHERE predicates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    column: str
    op: ComparisonOp
    value: Literal


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between:
    column: str
    low: Literal
    high: Literal
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    operands: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not:
    operand: Predicate


Predicate: TypeAlias = Comparison | InList | Between | IsNull | And | Or | Not


def predicate_columns(predicate: Predicate | None) -> frozenset[str]:
    """All column names a predicate reads."""
    if predicate is None:
        return frozenset()
    if isinstance(predicate, (And, Or)):
        out: frozenset[str] = frozenset()
        for operand in predicate.operands:
            out |= predicate_columns(operand)
        return out
    if isinstance(predicate, Not):
        return predicate_columns(predicate.operand)
    return frozenset({predicate.column})


@dataclass(frozen=True)
class Query:
    """``SELECT outputs FROM dataset [WHERE where] [GROUP BY group_by]``, already syntax-checked.

    ``outputs`` keeps the SELECT order; ``group_by`` keeps the GROUP BY order (which is the order
    of the group key in every released row).
    """

    dataset: str
    outputs: tuple[OutputColumn, ...]
    group_by: tuple[str, ...] = ()
    where: Predicate | None = None

    def __post_init__(self) -> None:
        if not self.aggregates:
            raise InvalidQuery(
                "the query has no aggregate; Accord only answers aggregates such as COUNT(*)",
                (Violation("select", "no aggregate"),),
            )
        names = [o.alias for o in self.outputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidQuery(
                f"output column name(s) {', '.join(dupes)} used twice; give each a distinct alias with AS",
                tuple(Violation("select", f"duplicate name {d}") for d in dupes),
            )

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return tuple(o for o in self.outputs if isinstance(o, Aggregate))

    @property
    def columns_read(self) -> frozenset[str]:
        cols = set(self.group_by) | set(predicate_columns(self.where))
        cols |= {a.column for a in self.aggregates if a.column is not None}
        return frozenset(cols)


@dataclass(frozen=True)
class QueryRequest:
    """What an analyst asks: one SQL text, the epsilon it may spend at each node, and an id.

    ``query_id`` is chosen by the client and reused on retries: a node that has already answered
    that id returns the stored release instead of spending budget again.
    """

    query_id: str
    sql: str
    epsilon: Fraction
    require_all: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.query_id or len(self.query_id) > 128:
            raise InvalidQuery(
                "query_id must be 1-128 characters; let the client generate a UUID",
                (Violation("query_id", "missing or too long"),),
            )
        if not isinstance(self.epsilon, Fraction):
            raise TypeError("epsilon must be a fractions.Fraction")
        if self.epsilon <= 0:
            raise InvalidQuery(
                f"epsilon must be greater than 0 (got {self.epsilon}); try 0.5",
                (Violation("epsilon", "not positive"),),
            )


# What an epsilon may look like before it is handed to Fraction: plain ASCII digits, and an
# exponent of at most two digits. Fraction alone would accept "1e999999999" and spend minutes
# building a billion-digit integer, so a single request could stall a server. The exact form
# (``str(value)``, what goes on the wire) must fit in MAX_EPSILON_TEXT too, so that every
# accepted epsilon is accepted again after a round trip.
_EPSILON_TEXT = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})?|[+-]?[0-9]+/[0-9]+"
)
MAX_EPSILON_TEXT = 64


def parse_epsilon(text: str) -> Fraction:
    """Parse an epsilon written as a decimal (``0.5``) or a fraction (``1/3``), exactly."""
    stripped = text.strip()
    value: Fraction | None = None
    if len(stripped) <= MAX_EPSILON_TEXT and _EPSILON_TEXT.fullmatch(stripped):
        with contextlib.suppress(ValueError, ZeroDivisionError):
            value = Fraction(stripped)
    if value is None:
        shown = text if len(text) <= MAX_EPSILON_TEXT else text[:MAX_EPSILON_TEXT] + "..."
        raise InvalidQuery(
            f"epsilon {shown!r} is not a number; write it as a decimal such as 0.5 or a fraction such as 1/3"
            f" (at most {MAX_EPSILON_TEXT} characters, an exponent of at most two digits)",
            (Violation("epsilon", "not a number"),),
        )
    if value <= 0:
        raise InvalidQuery(
            f"epsilon must be greater than 0 (got {stripped}); try 0.5",
            (Violation("epsilon", "not positive"),),
        )
    if value > 100:
        raise InvalidQuery(
            f"epsilon {stripped} is far beyond any meaningful privacy guarantee; use a value of at most 100",
            (Violation("epsilon", "too large"),),
        )
    if len(format_epsilon(value)) > MAX_EPSILON_TEXT:
        raise InvalidQuery(
            f"epsilon {stripped} has too many digits to be carried exactly; round it, e.g. to 0.5 or 1/3",
            (Violation("epsilon", "too many digits"),),
        )
    return value


def format_epsilon(value: Fraction) -> str:
    """The exact wire form of an epsilon (``"1/2"``, ``"3"``)."""
    return str(value)
