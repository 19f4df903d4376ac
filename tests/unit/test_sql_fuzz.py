"""Property tests for protos.sql: nothing but InvalidQuery ever escapes, and generated valid
queries parse to exactly the tree they were generated from."""

from __future__ import annotations

import logging

import pytest
import sqlglot
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from protos.errors import InvalidQuery
from protos.model import (
    Aggregate,
    AggregateFunction,
    And,
    Between,
    Comparison,
    ComparisonOp,
    GroupColumn,
    InList,
    IsNull,
    Literal,
    Not,
    Or,
    OutputColumn,
    Predicate,
    Query,
)
from protos.sql import MAX_NESTING, parse

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = [
    "SELECT COUNT(*) FROM pums",
    "SELECT sex, COUNT(*) AS n, SUM(income), AVG(age) FROM pums WHERE age >= 18 GROUP BY sex;",
    "SELECT COUNT(income) FROM pums WHERE district IN ('north', 'south') AND NOT (married = TRUE)",
    "SELECT educ, COUNT(*) FROM pums WHERE age BETWEEN -1 AND 2.5 OR name IS NOT NULL GROUP BY educ",
    'SELECT "Sex", AVG(score) FROM "PUMS" WHERE 3 < age AND sex NOT IN (1) GROUP BY "Sex"',
]
VOCABULARY = [
    "(", ")", ",", ";", "'", '"', "*", "-", "--", "/*", "*/", "$$", "=", "<", ">=", "!=", " ", "\n",
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT 1", "JOIN", "UNION", "WITH",
    "DISTINCT", "AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TRUE", "COUNT(*)", "SUM(", "AVG(",
    "MIN(", "OVER ()", "CASE WHEN", "END", "(SELECT 1)", "pums", "age", "1", "-1", "1e999", "'x'",
    "::int", "?", "$1", "\x00", "é", "\\", "[1]", "{'a': 1}", "E'x'", "INSERT", "DROP", "PRAGMA",
]  # fmt: skip


def parse_or_refuse(text: str) -> Query | None:
    try:
        return parse(text)
    except InvalidQuery as err:
        assert err.message and err.violations
        return None


@pytest.fixture(autouse=True)
def _quiet_sqlglot() -> None:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)


@FUZZ
@given(st.text(max_size=200))
def test_random_text_only_raises_invalid_query(text: str) -> None:
    parse_or_refuse(text)


@FUZZ
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40).map(" ".join))
def test_random_token_soup_only_raises_invalid_query(text: str) -> None:
    parse_or_refuse(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "replace"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(VOCABULARY)) + text[i:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + draw(st.text(max_size=3)) + text[j:]
    return text


@FUZZ
@given(mutated())
def test_mutated_queries_only_raise_invalid_query(text: str) -> None:
    parse_or_refuse(text)


# ---- nesting is bounded whatever the cheap pre-scan makes of the text ---------------------

NOISE = ["(", ")", "'a'", "'('", '"("', "/* ( */", "-- (\n", "$$ ( $$", "$a$ ' $a$", "e'\\''", "\n", " "]
NOISE += ["'", '"', "--", "/*", "*/", "$$", "$a$", "e'", "\\", "''"]


def _real_depth(text: str) -> int | None:
    try:
        tokens = sqlglot.tokenize(text, read="duckdb")
    except (SqlglotError, RecursionError, ValueError):
        return None
    depth = deepest = 0
    for token in tokens:
        if token.token_type is TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type is TokenType.R_PAREN:
            depth = max(depth - 1, 0)
    return deepest


@FUZZ
@given(st.lists(st.sampled_from(NOISE), max_size=12).map("".join))
def test_whatever_sqlglot_would_nest_too_deeply_is_refused(noise: str) -> None:
    text = "SELECT COUNT(*) FROM t WHERE " + noise + "(" * (MAX_NESTING + 1) + "a = 1"
    depth = _real_depth(text)
    assume(depth is not None and depth > MAX_NESTING)
    with pytest.raises(InvalidQuery) as info:
        parse(text)
    assert "nest" in info.value.message


# ---- grammar-based generation of valid queries -----------------------------------------------

COLUMNS = [
    ("age", "age"),
    ("income", "income"),
    ("sex", "sex"),
    ("Educ", "Educ"),
    ('"Dist rict"', "Dist rict"),
]
KEYWORD_CASE = st.sampled_from([str.upper, str.lower, str.title])


def kw(draw: st.DrawFn, word: str) -> str:
    return draw(KEYWORD_CASE)(word)


@st.composite
def literals(draw: st.DrawFn) -> tuple[str, Literal]:
    kind = draw(st.sampled_from(["int", "float", "str", "bool"]))
    if kind == "int":
        i = draw(st.integers(-(2**63), 2**63 - 1))
        return str(i), i
    if kind == "float":
        f = draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
        return repr(f), f
    if kind == "str":
        s = draw(st.text(st.characters(blacklist_categories=["Cs"]), max_size=12))
        return "'" + s.replace("'", "''") + "'", s
    b = draw(st.booleans())
    return kw(draw, "TRUE" if b else "FALSE"), b


OPS = {"=": ComparisonOp.EQ, "<>": ComparisonOp.NE, "!=": ComparisonOp.NE, "<": ComparisonOp.LT}
OPS |= {"<=": ComparisonOp.LE, ">": ComparisonOp.GT, ">=": ComparisonOp.GE}
FLIP = {"=": "=", "<>": "<>", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@st.composite
def leaves(draw: st.DrawFn) -> tuple[str, Predicate]:
    col_sql, col = draw(st.sampled_from(COLUMNS))
    kind = draw(st.sampled_from(["cmp", "in", "between", "null"]))
    negated = draw(st.booleans())
    if kind == "cmp":
        op = draw(st.sampled_from(sorted(OPS)))
        lit_sql, lit = draw(literals())
        if draw(st.booleans()):
            return f"{lit_sql} {FLIP[op]} {col_sql}", Comparison(col, OPS[op], lit)
        return f"{col_sql} {op} {lit_sql}", Comparison(col, OPS[op], lit)
    not_ = kw(draw, "NOT ") if negated else ""
    if kind == "in":
        items = draw(st.lists(literals(), min_size=1, max_size=5))
        sql = f"{col_sql} {not_}{kw(draw, 'IN')} ({', '.join(s for s, _ in items)})"
        return sql, InList(col, tuple(v for _, v in items), negated)
    if kind == "between":
        (lo_sql, lo), (hi_sql, hi) = draw(literals()), draw(literals())
        sql = f"{col_sql} {not_}{kw(draw, 'BETWEEN')} {lo_sql} {kw(draw, 'AND')} {hi_sql}"
        return sql, Between(col, lo, hi, negated)
    return f"{col_sql} {kw(draw, 'IS')} {not_}{kw(draw, 'NULL')}", IsNull(col, negated)


def combine(children: st.SearchStrategy[tuple[str, Predicate]]) -> st.SearchStrategy[tuple[str, Predicate]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, Predicate]:
        kind = draw(st.sampled_from(["and", "or", "not"]))
        if kind == "not":
            sql, pred = draw(children)
            return f"{kw(draw, 'NOT')} ({sql})", Not(pred)
        parts = draw(st.lists(children, min_size=2, max_size=3))
        word = kw(draw, kind.upper())
        sql = f" {word} ".join(f"({s})" for s, _ in parts)
        preds = tuple(p for _, p in parts)
        return sql, And(preds) if kind == "and" else Or(preds)

    return build()


predicates = st.recursive(leaves(), combine, max_leaves=8)


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, Query]:
    group = draw(st.lists(st.sampled_from(COLUMNS), unique=True, max_size=3))
    items: list[tuple[str, OutputColumn]] = []
    for col_sql, col in draw(st.lists(st.sampled_from(group), unique=True)) if group else []:
        items.append((col_sql, GroupColumn(col, col)))
    for _ in range(draw(st.integers(1, 3))):
        fn = draw(st.sampled_from(list(AggregateFunction)))
        if fn is AggregateFunction.COUNT and draw(st.booleans()):
            items.append((kw(draw, "COUNT") + "(*)", Aggregate(fn, None, "count")))
        else:
            col_sql, col = draw(st.sampled_from(COLUMNS))
            items.append(
                (f"{kw(draw, fn.value)}({col_sql})", Aggregate(fn, col, f"{fn.value.lower()}_{col}"))
            )
    items = draw(st.permutations(items))
    seen: set[str] = set()
    select: list[str] = []
    outputs: list[OutputColumn] = []
    for i, (sql, out) in enumerate(items):
        if out.alias in seen or draw(st.booleans()):
            alias = f"out_{i}"
            sql = f"{sql} {kw(draw, 'AS')} {alias}"
            out = (
                GroupColumn(out.column, alias)
                if isinstance(out, GroupColumn)
                else Aggregate(out.function, out.column, alias)
            )
        seen.add(out.alias)
        select.append(sql)
        outputs.append(out)
    dataset_sql, dataset = draw(st.sampled_from([("pums", "pums"), ('"PUMS data"', "PUMS data")]))
    text = f"{kw(draw, 'SELECT')} {', '.join(select)} {kw(draw, 'FROM')} {dataset_sql}"
    where: Predicate | None = None
    if draw(st.booleans()):
        where_sql, where = draw(predicates)
        text += f" {kw(draw, 'WHERE')} {where_sql}"
    if group:
        text += f" {kw(draw, 'GROUP BY')} {', '.join(s for s, _ in group)}"
    text += draw(st.sampled_from(["", ";", " ;\n", "  -- done"]))
    return text, Query(dataset, tuple(outputs), tuple(c for _, c in group), where)


@FUZZ
@given(queries())
def test_generated_queries_parse_to_the_expected_tree(case: tuple[str, Query]) -> None:
    text, expected = case
    assert parse(text) == expected
