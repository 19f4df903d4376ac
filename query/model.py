"""The query model: an immutable tree that both the coordinator and the nodes speak.

A query is parsed from SQL (see :mod:`accord.query.sql`) into these frozen dataclasses. Nothing in
here knows about gRPC, DuckDB or OpenDP: the tree is rendered to an engine by the node and
converted to/from the wire by :mod:`accord.protos.convert`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

from accord.errors import InvalidQuery, Violation
from accord.query.epsilon import Epsilon

__all__ = [
    "ANSWER_COLUMNS",
    "ESTIMATE_SUFFIXES",
    "QUERY_ID_PATTERN",
    "Aggregate",
    "AggregateFunction",
    "And",
    "Between",
    "Comparison",
    "ComparisonOp",
    "GroupColumn",
    "InList",
    "IsNull",
    "Literal",
    "Not",
    "Or",
    "OutputColumn",
    "Predicate",
    "Query",
    "QueryRequest",
    "predicate_columns",
]


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


ESTIMATE_SUFFIXES = ("_ci_low", "_ci_high", "_noise_scale")
"""Every flat form of an answer (CSV, JSON, Arrow) has, for each aggregate ``<name>``, the columns
``<name>`` and ``<name>`` with each of these suffixes."""
ANSWER_COLUMNS = ("suppressed", "nodes")
"""Columns every flat form of an answer may carry besides the query's own."""


@dataclass(frozen=True)
class Query:
    """``SELECT outputs FROM dataset [WHERE where] [GROUP BY group_by]``, already syntax-checked.

    ``outputs`` keeps the SELECT order. Every GROUP BY column is selected exactly once, and
    ``group_by`` lists them in the order they are selected (the parser puts them in that order:
    the order of a GROUP BY list changes no group), which is also the order of the group key in
    every released row: each released row carries its key under the group columns it is shown
    in, and the coordinator aligns the nodes' rows by that key. A query whose group columns do
    not match ``group_by`` is refused here, before any node computes or spends anything.
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
        self._check_flat_names()
        self._check_groups()

    def _check_flat_names(self) -> None:
        """The flat columns of the answer (each aggregate's interval and noise-scale columns, and
        the answer's own) must not collide, or one value would silently overwrite another."""
        flat = [o.alias for o in self.outputs if isinstance(o, GroupColumn)] + list(ANSWER_COLUMNS)
        flat += [a.alias + s for a in self.aggregates for s in ("", *ESTIMATE_SUFFIXES)]
        clashes = sorted({n for n in flat if flat.count(n) > 1})
        if clashes:
            raise InvalidQuery(
                f"the output column name(s) {', '.join(clashes)} would collide in the answer, which has, "
                "besides your columns, <name>_ci_low, <name>_ci_high and <name>_noise_scale for each "
                f"aggregate and {' and '.join(ANSWER_COLUMNS)}; choose other names with AS",
                tuple(Violation("select", f"name {c} collides") for c in clashes),
            )

    def _check_groups(self) -> None:
        selected = [o.column for o in self.outputs if isinstance(o, GroupColumn)]
        twice = sorted({c for c in selected if selected.count(c) > 1})
        if twice:
            raise InvalidQuery(
                f"the group column(s) {', '.join(twice)} are selected more than once; select each "
                "group column once (AS gives it another name: SELECT sex AS s, COUNT(*) ...)",
                tuple(Violation("select", f"{c} selected twice") for c in twice),
            )
        ungrouped = [c for c in selected if c not in self.group_by]
        if ungrouped:
            raise InvalidQuery(
                f"the column(s) {', '.join(ungrouped)} are selected but not grouped; add them to "
                "GROUP BY or wrap them in an aggregate such as COUNT(column)",
                tuple(Violation("select", f"bare column {c}") for c in ungrouped),
            )
        unselected = [c for c in self.group_by if c not in selected]
        if unselected:
            listed = ", ".join(unselected)
            raise InvalidQuery(
                f"GROUP BY {listed}: the group column(s) {listed} are not selected, so the released "
                f"rows could not say which group is which; select them too: SELECT {listed}, "
                "aggregates ... GROUP BY " + ", ".join(self.group_by),
                tuple(Violation("group_by", f"{c} not selected") for c in unselected),
            )
        if tuple(selected) != self.group_by:
            raise InvalidQuery(
                "list the group columns in the same order in SELECT and GROUP BY",
                (Violation("group_by", "order differs from SELECT"),),
            )

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return tuple(o for o in self.outputs if isinstance(o, Aggregate))

    @property
    def columns_read(self) -> frozenset[str]:
        cols = set(self.group_by) | set(predicate_columns(self.where))
        cols |= {a.column for a in self.aggregates if a.column is not None}
        return frozenset(cols)


QUERY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""A query id: 1-128 letters, digits, '.', '_', ':' or '-' (a UUID fits), so that it can be logged
and stored as it is."""


@dataclass(frozen=True)
class QueryRequest:
    """What an analyst asks: one SQL text, the epsilon it may spend at each node, the data-sharing
    agreement it is asked under (empty until agreements are enforced), and an id.

    ``query_id`` is chosen by the client and reused on retries: a node that has already answered
    that id returns the stored release instead of spending budget again.
    """

    query_id: str
    sql: str
    epsilon: Epsilon
    agreement: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.query_id, str) or not QUERY_ID_PATTERN.fullmatch(self.query_id):
            raise InvalidQuery(
                "query_id must be 1-128 letters, digits, '.', '_', ':' or '-' (starting with a letter or "
                "digit); let the client generate a UUID",
                (Violation("query_id", "missing, too long or with other characters"),),
            )
        if not isinstance(self.epsilon, Epsilon):
            raise TypeError("epsilon must be an accord.query.epsilon.Epsilon")
        if self.epsilon.value <= 0:
            raise InvalidQuery(
                f"epsilon must be greater than 0 (got {self.epsilon}); try 0.5",
                (Violation("epsilon", "not positive"),),
            )
