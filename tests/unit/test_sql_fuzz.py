"""Property tests for accord.query.sql: nothing but InvalidQuery ever escapes, and generated valid
queries parse to exactly the tree they were generated from.

The oracle, the catalog and the newer generators (grammar-based over a realistic catalog,
meaning-preserving rewrites, injected refused constructs, byte and token mutations) live in
:mod:`tests.fuzz.sqlfuzz`, shared with the long run in ``tests/fuzz`` (``make test-slow``). Every
text goes through both :func:`accord.query.sql.parse` and :func:`accord.query.sql.compile_query`; an accepted
query must re-validate, read only declared columns and render to the node's SQL.
"""

from __future__ import annotations

import logging

import pytest
import sqlglot
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from accord.errors import InvalidQuery
from accord.query.model import (
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
from accord.query.sql import MAX_NESTING, compile_query, parse
from tests.fuzz.sqlfuzz import (
    CATALOG,
    INJECTION_NAMES,
    INJECTIONS,
    Generated,
    byte_mutated,
    check,
    check_accepted,
    compile_outcome,
    injected,
    rewritten,
    token_mutated,
    valid_ish,
    valid_queries,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The grammar-based generators below draw a lot per example: fewer examples keep `make test` quick;
# tests/fuzz/test_sql_long.py runs the same properties for many more (`make test-slow`).
GRAMMAR = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

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
    """parse() and compile_query() of ``text``: the accepted query (its invariants checked) or
    None for a typed refusal; any other exception fails the test."""
    outcome = check(text)
    return outcome if isinstance(outcome, Query) else None


@pytest.fixture(autouse=True)
def _quiet_sqlglot() -> None:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)


@FUZZ
@given(st.text(max_size=200))
def test_random_text_only_raises_invalid_query(text: str) -> None:
    """Property: arbitrary unicode text is either accepted (with valid invariants) or refused with
    InvalidQuery, by parse and by compile_query alike."""
    parse_or_refuse(text)


@FUZZ
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40).map(" ".join))
def test_random_token_soup_only_raises_invalid_query(text: str) -> None:
    """Property: any sequence of SQL words, operators and hostile fragments yields a query or
    InvalidQuery, nothing else."""
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
    """Property: valid queries with characters deleted, inserted, duplicated or replaced yield a
    query or InvalidQuery, nothing else."""
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
    """Property: whatever strings, comments or quotes precede it, parenthesis nesting deeper than
    MAX_NESTING (as sqlglot's own tokenizer counts it) is refused as too deep."""
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
    for col_sql, col in group:  # every group column is selected once (in any order, below)
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
    selected = tuple(o.column for o in outputs if isinstance(o, GroupColumn))
    return text, Query(dataset, tuple(outputs), selected, where)


@FUZZ
@given(queries())
def test_generated_queries_parse_to_the_expected_tree(case: tuple[str, Query]) -> None:
    """Property: every query generated from the accepted grammar parses to exactly the tree it was
    generated from (aliases, flattening, flipped comparisons, literals of every type)."""
    text, expected = case
    assert parse(text) == expected


# ---- against a realistic catalog (tests.fuzz.sqlfuzz) -----------------------------------------


@GRAMMAR
@given(valid_queries())
def test_catalog_queries_compile_to_the_expected_tree(query: Generated) -> None:
    """Property: a type-correct query generated over the catalog compiles to exactly its expected
    tree, re-validates, reads only declared non-identifying columns and renders to node SQL."""
    compiled = compile_query(query.text, CATALOG)
    assert compiled == query.expected
    check_accepted(compiled, query.text)


@GRAMMAR
@given(st.data())
def test_rewritten_queries_compile_to_the_same_tree(data: st.DataObject) -> None:
    """Property (metamorphic): separators, comments between tokens, keyword case, redundant
    parentheses around WHERE, FROM-first order and a trailing semicolon do not change the tree."""
    query = data.draw(valid_queries())
    text = data.draw(rewritten(query))
    assert compile_query(text, CATALOG) == query.expected, text


@GRAMMAR
@given(st.data())
def test_injected_refused_constructs_are_refused(data: st.DataObject) -> None:
    """Property: putting any construct outside the subset (joins, subqueries, CTEs, windows, ORDER
    BY, LIMIT, set operations, casts, odd strings, parameters, huge numbers, deep nesting...) into
    a valid query makes compile_query refuse it with InvalidQuery, never accept or crash."""
    query = data.draw(valid_queries())
    name, text = data.draw(injected(query))
    outcome = compile_outcome(text)
    assert isinstance(outcome, InvalidQuery), (name, text, outcome)


_BASE = Generated(
    select=(["sex"], ["COUNT", "(", "*", ")"]),
    dataset=["pums"],
    where=["age", ">=", "18"],
    group=(["sex"],),
    expected=Query(
        "pums",
        (GroupColumn("sex", "sex"), Aggregate(AggregateFunction.COUNT, None, "count")),
        ("sex",),
        Comparison("age", ComparisonOp.GE, 18),
    ),
    schema=CATALOG["pums"],
)


def test_base_query_of_the_injections_is_accepted() -> None:
    """Property: the query every injection below starts from is itself accepted as expected (so a
    refusal below is the injected construct's doing)."""
    assert compile_query(_BASE.text, CATALOG) == _BASE.expected


@pytest.mark.parametrize("name", INJECTION_NAMES)
def test_each_refused_construct_is_refused(name: str) -> None:
    """Property: each construct in the injection catalogue, added to an accepted query, is refused
    with InvalidQuery by compile_query (every construct checked, not just those hypothesis draws)."""
    text = INJECTIONS[name](_BASE, "age")
    outcome = compile_outcome(text)
    assert isinstance(outcome, InvalidQuery), (name, text, outcome)


@GRAMMAR
@given(valid_ish())
def test_valid_ish_text_only_yields_a_query_or_invalid_query(text: str) -> None:
    """Property: valid queries perturbed by grammar-aware noise (odd unicode whitespace, NUL,
    hostile literals and escapes, dropped/doubled tokens, extra clauses, semicolons) yield an
    accepted query with valid invariants or InvalidQuery, from parse and compile_query alike."""
    check(text)


@GRAMMAR
@given(byte_mutated())
def test_byte_mutations_only_yield_a_query_or_invalid_query(text: str) -> None:
    """Property: byte-level mutations of valid queries (bit flips, NUL, invalid UTF-8 decoded with
    surrogateescape, deleted/duplicated/swapped/spliced ranges) yield a query or InvalidQuery."""
    check(text)


@GRAMMAR
@given(token_mutated())
def test_token_mutations_only_yield_a_query_or_invalid_query(text: str) -> None:
    """Property: token-level mutations of valid queries (insert, delete, duplicate, swap, replace)
    yield a query or InvalidQuery."""
    check(text)


def test_comment_after_the_final_semicolon_is_accepted() -> None:
    """Property (regression found by the rewriting fuzzer): a comment after the statement's final
    semicolon is not a second statement; two real statements are still refused."""
    expected = parse("SELECT COUNT(*) FROM pums")
    for tail in ("; -- done", ";\n-- done", "; /* done */", "; /* a */ ; -- b"):
        assert parse("SELECT COUNT(*) FROM pums" + tail) == expected
    with pytest.raises(InvalidQuery, match="2 statements"):
        parse("SELECT COUNT(*) FROM pums; /* a */ SELECT COUNT(*) FROM pums")
