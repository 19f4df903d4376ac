"""Shared pieces of the SQL fuzzers: a realistic catalog, the oracle, grammar-based generators and
mutators.

The oracle (:func:`check`) is the property every fuzzer enforces: for *any* text,
:func:`accord.query.sql.parse` and :func:`accord.query.sql.compile_query` either return a :class:`Query` or
raise the engine's own typed rejection, :class:`InvalidQuery` (:class:`NotFound` is a subclass),
with a message and violations. Any other exception, a hang or a crash is a bug. An accepted query
must also satisfy the invariants in :func:`check_accepted` (it re-validates, its columns exist,
its literals are finite and typed, it renders to the node's SQL).

Used by ``tests/unit/test_sql_fuzz.py`` (fast, ``make test``), ``tests/fuzz/test_sql_long.py``
(long, ``make test-slow``) and the atheris harness ``tests/fuzz/atheris_sql.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from accord.errors import InvalidQuery
from accord.node.duckdb.sqlrender import render
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
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.query.sql import MAX_IN_LIST, MAX_NESTING, MAX_PREDICATES, compile_query, parse, validate

INTEGER, FLOAT, BOOLEAN, STRING = ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN, ColumnType.STRING

# ---- a realistic catalog ---------------------------------------------------------------------

CATALOG: Mapping[str, DatasetSchema] = {
    s.name: s
    for s in (
        DatasetSchema(
            "pums",
            (
                ColumnSpec("pid", INTEGER),
                ColumnSpec("age", INTEGER, 0, 100),
                ColumnSpec("sex", INTEGER, categories=(0, 1)),
                ColumnSpec("educ", INTEGER, 1, 16, categories=tuple(range(1, 17))),
                ColumnSpec("race", INTEGER, categories=(1, 2, 3, 4, 5, 6, 7, 8)),
                ColumnSpec("income", FLOAT, 0.0, 500000.0),
                ColumnSpec("married", BOOLEAN, categories=(True, False)),
            ),
            privacy_unit="pid",
            max_rows_per_person=2,
        ),
        DatasetSchema(
            "citizens",
            (
                ColumnSpec("person_id", STRING),
                ColumnSpec("district", STRING, categories=("Northbrook", "Southdale")),
                ColumnSpec("age_band", STRING, categories=("0-17", "18-34", "35-64", "65+")),
                ColumnSpec("age", INTEGER, 0, 100),
                ColumnSpec("household_size", INTEGER, 1, 8),
                ColumnSpec("income", INTEGER, 0, 250_000),
                ColumnSpec("claims_housing_benefit", BOOLEAN, categories=(True, False)),
                ColumnSpec("note", STRING),
            ),
            privacy_unit="person_id",
            max_rows_per_person=1,
        ),
        DatasetSchema(
            "Mixed Case",
            (
                ColumnSpec("id", STRING),
                ColumnSpec("Score", FLOAT, -1.5, 2.5),
                ColumnSpec("Kind", STRING, categories=("a", "b'c", "é", "")),
                ColumnSpec("flag", BOOLEAN),
                ColumnSpec("n", INTEGER),
            ),
            privacy_unit="id",
            max_rows_per_person=3,
        ),
    )
}

# ---- the oracle ------------------------------------------------------------------------------

Outcome = Query | InvalidQuery


def _literal_ok(value: Literal) -> bool:
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


def _predicates(p: Predicate | None) -> list[Predicate]:
    out: list[Predicate] = []
    stack = [] if p is None else [p]
    while stack:
        item = stack.pop()
        out.append(item)
        if isinstance(item, And | Or):
            assert len(item.operands) >= 2, item
            stack.extend(item.operands)
        elif isinstance(item, Not):
            stack.append(item.operand)
    return out


def check_parsed(query: Query, text: str) -> None:
    """Invariants of any query :func:`parse` accepted (no catalog needed)."""
    assert isinstance(query, Query)
    assert query.dataset and all(isinstance(c, str) and c for c in query.columns_read)
    aliases = [o.alias for o in query.outputs]
    assert len(set(aliases)) == len(aliases) and all(aliases)
    assert query.aggregates
    assert len(set(query.group_by)) == len(query.group_by)
    # every group column is selected once, and group_by follows the SELECT order
    assert tuple(o.column for o in query.outputs if isinstance(o, GroupColumn)) == query.group_by
    predicates = _predicates(query.where)
    assert len(predicates) <= MAX_PREDICATES
    for p in predicates:
        if isinstance(p, Comparison):
            assert _literal_ok(p.value)
        elif isinstance(p, InList):
            assert 1 <= len(p.values) <= MAX_IN_LIST and all(_literal_ok(v) for v in p.values)
        elif isinstance(p, Between):
            assert _literal_ok(p.low) and _literal_ok(p.high)
    assert parse(text) == query  # deterministic


def check_accepted(query: Query, text: str, catalog: Mapping[str, DatasetSchema] = CATALOG) -> None:
    """Invariants of a query :func:`compile_query` accepted: it re-validates against its dataset,
    every column it reads is declared (and is not the privacy unit), SUM/AVG read bounded numeric
    columns, GROUP BY columns have public categories, and the node can render it to SQL."""
    check_parsed(query, text)
    schema = catalog[query.dataset]
    validate(query, schema)
    for column in query.columns_read:
        spec = schema.column(column)
        assert spec is not None and column != schema.privacy_unit
    for agg in query.aggregates:
        if agg.function is not AggregateFunction.COUNT:
            spec = schema.column(agg.column or "")
            assert spec is not None and spec.type.numeric and spec.bounded
    for column in query.group_by:
        spec = schema.column(column)
        assert spec is not None and spec.categories is not None
    rendered = render(query, schema, needs_bounding=True, relation='"data"')
    assert rendered.sql.startswith("SELECT ") and rendered.group_by == query.group_by


def _refused(err: InvalidQuery) -> InvalidQuery:
    assert type(err).__module__ == "accord.errors", type(err)
    assert isinstance(err.message, str) and err.message
    assert err.violations and all(v.field and v.description for v in err.violations)
    return err


def parse_outcome(text: str) -> Outcome:
    """``parse(text)``: the accepted query (invariants checked) or the typed refusal. Anything
    else propagates and fails the calling test."""
    try:
        query = parse(text)
    except InvalidQuery as err:
        return _refused(err)
    check_parsed(query, text)
    return query


def compile_outcome(text: str, catalog: Mapping[str, DatasetSchema] = CATALOG) -> Outcome:
    """``compile_query(text, catalog)``, checked like :func:`parse_outcome`."""
    try:
        query = compile_query(text, catalog)
    except InvalidQuery as err:
        return _refused(err)
    check_accepted(query, text, catalog)
    return query


def check(text: str) -> Outcome:
    """The whole oracle: parse and compile agree, and only typed refusals come out."""
    parsed = parse_outcome(text)
    compiled = compile_outcome(text)
    if isinstance(parsed, InvalidQuery):
        assert isinstance(compiled, InvalidQuery)
        assert compiled.message == parsed.message  # the same refusal, from the same parse
    elif isinstance(compiled, Query):
        assert compiled == parsed
    return compiled


# ---- grammar-based generation of valid queries over the catalog ------------------------------

PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL"}
    | {"TRUE", "FALSE", "COUNT", "SUM", "AVG"}
)


def name_sql(draw: st.DrawFn, name: str) -> str:
    """A name as written: bare when it may be, else (or at random) double-quoted."""
    if PLAIN_NAME.fullmatch(name) and name.upper() not in KEYWORDS and draw(st.integers(0, 3)):
        return name
    return '"' + name.replace('"', '""') + '"'


def kw(draw: st.DrawFn, word: str) -> str:
    return draw(st.sampled_from([str.upper, str.lower, str.title, str.swapcase]))(word)


def _int_sql(value: int) -> str:
    return str(value)


def _typed_literal(draw: st.DrawFn, spec: ColumnSpec) -> tuple[str, Literal]:
    if spec.type is BOOLEAN:
        b = draw(st.booleans())
        return kw(draw, "TRUE" if b else "FALSE"), b
    if spec.type is STRING:
        pool = [*(spec.categories or ()), "", "x", "it's", "Ünïcödé ☃", "\x00nul", "a\nb", "--", "/*"]
        s = draw(st.sampled_from(pool) | st.text(st.characters(blacklist_categories=["Cs"]), max_size=8))
        assert isinstance(s, str)
        return "'" + s.replace("'", "''") + "'", s
    ints = st.integers(-(2**63), 2**63 - 1)
    if spec.lower is not None and spec.upper is not None and draw(st.booleans()):
        ints = st.integers(math.floor(spec.lower) - 2, math.ceil(spec.upper) + 2)
    if spec.type is INTEGER or draw(st.booleans()):
        i = draw(ints)
        return _int_sql(i), i
    f = draw(st.floats(allow_nan=False, allow_infinity=False))
    return repr(f), f


_OPS = {"=": ComparisonOp.EQ, "<>": ComparisonOp.NE, "!=": ComparisonOp.NE, "<": ComparisonOp.LT}
_OPS |= {"<=": ComparisonOp.LE, ">": ComparisonOp.GT, ">=": ComparisonOp.GE}
_FLIP = {"=": "=", "<>": "<>", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

Tokens = list[str]


def _leaf(draw: st.DrawFn, schema: DatasetSchema) -> tuple[Tokens, Predicate]:
    usable = [c for c in schema.columns if c.name != schema.privacy_unit]
    spec = draw(st.sampled_from(usable))
    col = name_sql(draw, spec.name)
    kind = draw(st.sampled_from(["cmp", "cmp", "in", "between", "null"]))
    negated = draw(st.booleans())
    not_ = [kw(draw, "NOT")] if negated else []
    if kind == "cmp":
        op = draw(st.sampled_from(sorted(_OPS)))
        lit_sql, lit = _typed_literal(draw, spec)
        if draw(st.booleans()):
            return [lit_sql, _FLIP[op], col], Comparison(spec.name, _OPS[op], lit)
        return [col, op, lit_sql], Comparison(spec.name, _OPS[op], lit)
    if kind == "in":
        items = [_typed_literal(draw, spec) for _ in range(draw(st.integers(1, 4)))]
        tokens = [col, *not_, kw(draw, "IN"), "("]
        for i, (s, _) in enumerate(items):
            tokens += [",", s] if i else [s]
        return [*tokens, ")"], InList(spec.name, tuple(v for _, v in items), negated)
    if kind == "between":
        (lo_sql, lo), (hi_sql, hi) = _typed_literal(draw, spec), _typed_literal(draw, spec)
        tokens = [col, *not_, kw(draw, "BETWEEN"), lo_sql, kw(draw, "AND"), hi_sql]
        return tokens, Between(spec.name, lo, hi, negated)
    return [col, kw(draw, "IS"), *not_, kw(draw, "NULL")], IsNull(spec.name, negated)


def _predicate(draw: st.DrawFn, schema: DatasetSchema, budget: int) -> tuple[Tokens, Predicate]:
    if budget <= 1 or draw(st.integers(0, 2)) == 0:
        return _leaf(draw, schema)
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        tokens, pred = _predicate(draw, schema, budget - 1)
        return [kw(draw, "NOT"), "(", *tokens, ")"], Not(pred)
    n = draw(st.integers(2, 3))
    parts = [_predicate(draw, schema, budget // n) for _ in range(n)]
    out: Tokens = []
    for i, (tokens, _) in enumerate(parts):
        if i:
            out.append(kw(draw, kind.upper()))
        out += ["(", *tokens, ")"]
    preds = tuple(p for _, p in parts)
    return out, And(preds) if kind == "and" else Or(preds)


@dataclass(frozen=True)
class Generated:
    """A generated valid query as token lists per clause, and the tree it must parse to."""

    select: tuple[Tokens, ...]
    dataset: Tokens
    where: Tokens | None
    group: tuple[Tokens, ...]
    expected: Query
    schema: DatasetSchema

    def clauses(self, select_kw: str = "SELECT") -> tuple[Tokens, Tokens, Tokens, Tokens]:
        """(SELECT list, FROM, WHERE, GROUP BY), each as tokens (empty when absent)."""
        select: Tokens = [select_kw]
        for i, item in enumerate(self.select):
            select += [",", *item] if i else item
        where = ["WHERE", *self.where] if self.where is not None else []
        group: Tokens = []
        for i, item in enumerate(self.group):
            group += [",", *item] if i else ["GROUP BY", *item]
        return select, ["FROM", *self.dataset], where, group

    def tokens(self) -> Tokens:
        select, from_, where, group = self.clauses()
        return [*select, *from_, *where, *group]

    @property
    def text(self) -> str:
        return " ".join(self.tokens())


@st.composite
def valid_queries(draw: st.DrawFn) -> Generated:
    """A query over :data:`CATALOG` that ``compile_query`` must accept, with its expected tree."""
    schema = draw(st.sampled_from(list(CATALOG.values())))
    groupable = [c for c in schema.columns if c.categories is not None and c.name != schema.privacy_unit]
    group_specs = draw(st.lists(st.sampled_from(groupable), unique=True, max_size=2)) if groupable else []
    group = [(name_sql(draw, c.name), c.name) for c in group_specs]
    items: list[tuple[Tokens, OutputColumn]] = []
    for col_sql, col in group:  # every group column is selected once (in any order, below)
        items.append(([col_sql], GroupColumn(col, col)))
    counted = [c for c in schema.columns if c.name != schema.privacy_unit]
    summable = [c for c in counted if c.type.numeric and c.bounded]
    for _ in range(draw(st.integers(1, 3))):
        fn = draw(st.sampled_from(list(AggregateFunction)))
        if fn is AggregateFunction.COUNT and draw(st.booleans()):
            items.append(([kw(draw, "COUNT"), "(", "*", ")"], Aggregate(fn, None, "count")))
            continue
        spec = draw(st.sampled_from(counted if fn is AggregateFunction.COUNT else summable))
        agg = Aggregate(fn, spec.name, f"{fn.value.lower()}_{spec.name}")
        items.append(([kw(draw, fn.value), "(", name_sql(draw, spec.name), ")"], agg))
    items = draw(st.permutations(items))
    seen: set[str] = set()
    select: list[Tokens] = []
    outputs: list[OutputColumn] = []
    for i, (tokens, out) in enumerate(items):
        if out.alias in seen or draw(st.integers(0, 3)) == 0:
            alias = draw(st.sampled_from([f"out_{i}", f'"Out {i}"']))
            name = alias.strip('"')
            tokens = [*tokens, kw(draw, "AS"), alias]
            out = (
                GroupColumn(out.column, name)
                if isinstance(out, GroupColumn)
                else Aggregate(out.function, out.column, name)
            )
        seen.add(out.alias)
        select.append(tokens)
        outputs.append(out)
    where: Tokens | None = None
    predicate: Predicate | None = None
    if draw(st.booleans()):
        where, predicate = _predicate(draw, schema, draw(st.integers(1, 6)))
    group_by = tuple(o.column for o in outputs if isinstance(o, GroupColumn))  # in SELECT order
    return Generated(
        tuple(select),
        [name_sql(draw, schema.name)],
        where,
        tuple([s] for s, _ in group),
        Query(schema.name, tuple(outputs), group_by, predicate),
        schema,
    )


# ---- meaning-preserving rewrites (metamorphic) -----------------------------------------------

SEPARATORS = [" ", "  ", "\t", "\n", "\r\n", " \n\t ", " /* c */ ", "/* ( ' \" */", " -- ) '\n", "\n--\n"]


@st.composite
def rewritten(draw: st.DrawFn, query: Generated) -> str:
    """The same query written differently: other separators and comments between tokens, extra
    parentheses around the WHERE condition, FROM-first order, leading/trailing noise, a trailing
    semicolon. It must compile to exactly the same tree."""
    select, from_, where, group = query.clauses(kw(draw, "SELECT"))
    from_ = [kw(draw, "FROM"), *from_[1:]]
    if where:
        extra = draw(st.integers(0, 3))
        where = [kw(draw, "WHERE"), *["("] * extra, *where[1:], *[")"] * extra]
    if group:
        # sqlglot reads GROUP BY as one keyword: only whitespace may separate the two words
        # (``GROUP /* c */ BY`` is refused as a syntax error: cleanly, but refused).
        space = draw(st.sampled_from([" ", "  ", "\t", "\n", "\r\n"]))
        group = [kw(draw, "GROUP") + space + kw(draw, "BY"), *group[1:]]
    order = [*from_, *select] if draw(st.integers(0, 4)) == 0 else [*select, *from_]
    tokens = [*order, *where, *group]
    sep = st.sampled_from(SEPARATORS)
    text = draw(st.sampled_from(["", "\n", "-- lead\n", "/* lead */ "]))
    for i, token in enumerate(tokens):
        text += (draw(sep) if i else "") + token
    return text + draw(st.sampled_from(["", ";", " ; ", ";\n-- end", " /* end */", "\n"]))


# ---- rejected constructs injected into valid queries ------------------------------------------


def _col(query: Generated) -> str:
    for c in query.schema.columns:
        if c.name != query.schema.privacy_unit and PLAIN_NAME.fullmatch(c.name):
            return c.name
    return '"' + query.schema.columns[1].name + '"'


Injection = Callable[[Generated, str], str]


def _suffix(clause: str) -> Injection:
    return lambda q, c: q.text + " " + clause.format(c=c, t=" ".join(q.dataset))


def _prefix(clause: str) -> Injection:
    return lambda q, c: clause.format(c=c, t=" ".join(q.dataset)) + " " + q.text


def _from(clause: str) -> Injection:
    def build(q: Generated, c: str) -> str:
        select, _, where, group = q.clauses()
        table = clause.format(c=c, t=" ".join(q.dataset))
        return " ".join([*select, "FROM", table, *where, *group])

    return build


def _select(item: str, replace: bool) -> Injection:
    def build(q: Generated, c: str) -> str:
        rest = [] if replace else list(q.select)
        items = [item.format(c=c, t=" ".join(q.dataset)), *(" ".join(i) for i in rest)]
        _, from_, where, group = q.clauses()
        return " ".join(["SELECT", ", ".join(items), *from_, *where, *group])

    return build


def _where(condition: str) -> Injection:
    def build(q: Generated, c: str) -> str:
        select, from_, where, group = q.clauses()
        cond = condition.format(c=c, t=" ".join(q.dataset))
        new = ["WHERE", "(", *where[1:], ")", "AND", cond] if where else ["WHERE", cond]
        return " ".join([*select, *from_, *new, *group])

    return build


_DEEP = MAX_NESTING + 1
INJECTIONS: dict[str, Injection] = {
    "order by": _suffix("ORDER BY {c}"),
    "limit": _suffix("LIMIT 10"),
    "offset": _suffix("LIMIT 1 OFFSET 1"),
    "fetch": _suffix("FETCH FIRST 1 ROWS ONLY"),
    "having": _suffix("HAVING COUNT(*) > 1"),
    "qualify": _suffix("QUALIFY {c} = 1"),
    "window clause": _suffix("WINDOW w AS (PARTITION BY {c})"),
    "union": _suffix("UNION SELECT COUNT(*) FROM {t}"),
    "union all": _suffix("UNION ALL SELECT COUNT(*) FROM {t}"),
    "except": _suffix("EXCEPT SELECT COUNT(*) FROM {t}"),
    "intersect": _suffix("INTERSECT SELECT COUNT(*) FROM {t}"),
    "second statement": _suffix("; SELECT COUNT(*) FROM {t}"),
    "drop statement": _suffix("; DROP TABLE {t}"),
    "sample": _suffix("USING SAMPLE 10%"),
    "with": _prefix("WITH x AS (SELECT COUNT(*) FROM {t})"),
    "explain": _prefix("EXPLAIN"),
    "pragma": _prefix("PRAGMA version;"),
    "join": _from("{t} JOIN other ON TRUE"),
    "left join": _from("{t} LEFT JOIN other USING ({c})"),
    "comma join": _from("{t}, other"),
    "cross join": _from("{t} CROSS JOIN other"),
    "table alias": _from("{t} AS d"),
    "bare table alias": _from("{t} d"),
    "qualified table": _from("main.{t}"),
    "derived table": _from("(SELECT * FROM {t})"),
    "derived table alias": _from("(SELECT * FROM {t}) AS s"),
    "table function": _from("read_csv('/etc/passwd')"),
    "file path": _from("'/etc/passwd'"),
    "tablesample": _from("{t} TABLESAMPLE 10%"),
    "values": _from("(VALUES (1), (2)) AS v(x)"),
    "distinct": lambda q, c: "SELECT DISTINCT " + q.text[len("SELECT ") :],
    "count distinct": _select("COUNT(DISTINCT {c})", False),
    "min": _select("MIN({c})", False),
    "max": _select("MAX({c})", True),
    "window function": _select("SUM({c}) OVER ()", False),
    "partitioned window": _select("COUNT(*) OVER (PARTITION BY {c} ORDER BY {c})", True),
    "arithmetic in aggregate": _select("SUM({c} + 1)", False),
    "arithmetic on aggregate": _select("SUM({c}) / 2", False),
    "cast in select": _select("CAST({c} AS INTEGER)", True),
    "filter": _select("COUNT(*) FILTER (WHERE {c} > 1)", False),
    "star": _select("*", False),
    "ungrouped column": _select("zzz_ungrouped", False),
    "literal in select": _select("1", True),
    "string in select": _select("'x'", False),
    "scalar subquery in select": _select("(SELECT 1)", False),
    "two-column count": _select("COUNT({c}, {c})", False),
    "sum star": _select("SUM(*)", True),
    "empty avg": _select("AVG()", False),
    "other function": _select("STDDEV({c})", False),
    "case in select": _select("CASE WHEN {c} = 1 THEN 1 END", False),
    "like": _where("{c} LIKE 'x%'"),
    "ilike": _where("{c} ILIKE 'x%'"),
    "similar": _where("{c} SIMILAR TO 'x'"),
    "glob": _where("{c} GLOB 'x*'"),
    "regex": _where("{c} ~ 'x'"),
    "scalar subquery": _where("{c} = (SELECT 1)"),
    "in subquery": _where("{c} IN (SELECT {c} FROM {t})"),
    "exists": _where("EXISTS (SELECT 1)"),
    "cast": _where("CAST({c} AS INTEGER) = 1"),
    "double-colon cast": _where("{c}::INTEGER = 1"),
    "literal cast": _where("{c} = CAST(1 AS BIGINT)"),
    "e-string": _where("{c} = E'\\x41'"),
    "dollar string": _where("{c} = $$x$$"),
    "tagged dollar string": _where("{c} = $t$x$t$"),
    "national string": _where("{c} = N'x'"),
    "placeholder": _where("{c} = ?"),
    "numbered parameter": _where("{c} = $1"),
    "named parameter": _where("{c} = :name"),
    "column comparison": _where("{c} = {c}"),
    "arithmetic": _where("{c} + 1 = 2"),
    "literal on both sides": _where("1 = 1"),
    "bare column": _where("{c}"),
    "bare literal": _where("TRUE"),
    "null comparison": _where("{c} = NULL"),
    "in null": _where("{c} IN (NULL)"),
    "negated string": _where("{c} = -'x'"),
    "is true": _where("{c} IS TRUE"),
    "is distinct": _where("{c} IS DISTINCT FROM 1"),
    "between symmetric": _where("{c} BETWEEN SYMMETRIC 1 AND 2"),
    "empty in": _where("{c} IN ()"),
    "array": _where("{c} = ARRAY[1]"),
    "list literal": _where("{c} = [1, 2]"),
    "struct": _where("{c} = {{'a': 1}}"),
    "interval": _where("{c} = INTERVAL 1 DAY"),
    "tuple": _where("({c}, {c}) = (1, 2)"),
    "qualified column": _where("{t}.{c} = 1"),
    "function in where": _where("abs({c}) = 1"),
    "case in where": _where("CASE WHEN {c} = 1 THEN TRUE END"),
    "huge float": _where("{c} = 1e999"),
    "huge negative float": _where("{c} = -1e999"),
    "huge integer": _where("{c} = 9223372036854775808"),
    "huge negative integer": _where("{c} = -9223372036854775809"),
    "enormous integer": _where("{c} = " + "9" * 5000),
    "long in list": _where("{c} IN (" + ", ".join(["1"] * (MAX_IN_LIST + 1)) + ")"),
    "deep parentheses": _where("(" * _DEEP + "{c} = 1" + ")" * _DEEP),
    "deep not": _where("NOT " * _DEEP + "{c} = 1"),
    "deep not parentheses": _where("NOT (" * _DEEP + "{c} = 1" + ")" * _DEEP),
    "deep minus": _where("{c} = " + "- " * _DEEP + "1"),
    "deep brackets": _where("{c} = " + "[" * _DEEP + "1" + "]" * _DEEP),
    "deep functions": _select("COUNT(" * _DEEP + "{c}" + ")" * _DEEP, True),
    "deep subqueries": _where("{c} IN " + "(SELECT {c} FROM {t} WHERE {c} IN " * _DEEP + "(1)" + ")" * _DEEP),
    "unknown column": _where("zzz_no_such_column = 1"),
    "unicode column": _where('"âge" = 1'),
    "unterminated string": _suffix("'oops"),
    "unterminated identifier": _suffix('"oops'),
    "unterminated comment": _suffix("/* oops"),
    "stray paren": _suffix(")"),
}
INJECTION_NAMES = sorted(INJECTIONS)


@st.composite
def injected(draw: st.DrawFn, query: Generated) -> tuple[str, str]:
    """(name of the construct, the query with it) for a construct Accord must refuse."""
    name = draw(st.sampled_from(INJECTION_NAMES))
    return name, INJECTIONS[name](query, _col(query))


# ---- valid-ish text from the grammar plus hostile pieces -------------------------------------

ODD_SPACE = ["\x0b", "\x0c", "\x85", "\xa0", "\u2028", "\u2029", "\u3000", "\ufeff", "\u200b", "\x00"]
HOSTILE = [
    "'it''s'", "E'\\''", "'\\'", "U&'\\0041'", "$$ ) $$", "/* /* nested */ */", "/* (", "-- (", "'", '"',
    "`x`", "[x]", "\"a\"\"b\"", "1e308", "1e309", "-0.0", "0x1F", "1_000", ".5", "5.", "1e", "NaN",
    "'Infinity'", "9" * 30, ";", ";;", "\\", "?", ":x", "@x", "#", "%", "^", "&", "|", "||", "->", "->>",
    "::", "=>", "**", "!", "~", "é", "ß", "\U0001f600", "İ", "Ω", "\udcff", "\ud800", "\x00",
]  # fmt: skip
EXTRA_CLAUSES = ["ORDER BY 1", "LIMIT 1", "HAVING TRUE", "UNION SELECT 1", ";", "; SELECT 1", "OFFSET 1"]


@st.composite
def valid_ish(draw: st.DrawFn) -> str:
    """A generated valid query whose tokens are perturbed by grammar-aware noise: odd whitespace
    and unicode between tokens, hostile literals, dropped or doubled tokens, extra clauses. (The
    noise comes from one seeded ``Random`` rather than a draw per token: many times faster.)"""
    query = draw(valid_queries())
    rng = draw(st.randoms(use_true_random=True))
    spaces = [" ", " ", " ", *ODD_SPACE, *SEPARATORS]
    out: list[str] = []
    for token in query.tokens():
        roll = rng.randrange(20)
        if roll == 0:
            continue  # drop it
        if roll == 1:
            out.append(rng.choice(HOSTILE))
        elif roll == 2:
            out.append(token + rng.choice(HOSTILE))
        elif roll == 3:
            out += [token, token]
        else:
            out.append(token)
        out.append(rng.choice(spaces))
    text = "".join(out)
    if rng.randrange(4) == 0:
        text += " " + rng.choice(EXTRA_CLAUSES)
    return text


# ---- mutation-based ---------------------------------------------------------------------------

SEEDS = [
    "SELECT COUNT(*) FROM pums",
    "SELECT sex, COUNT(*) AS n, SUM(income), AVG(age) FROM pums WHERE age >= 18 GROUP BY sex;",
    "SELECT married, educ, AVG(income) FROM pums WHERE race IN (1, 2) AND NOT (age < 30) "
    "GROUP BY married, educ",
    "SELECT district, COUNT(*) AS people, AVG(income) AS mean_income FROM citizens GROUP BY district",
    "SELECT COUNT(note) FROM citizens WHERE district = 'Northbrook' AND age BETWEEN 65 AND 100 "
    "OR note IS NOT NULL",
    'SELECT "Kind", AVG("Score") FROM "Mixed Case" WHERE "Kind" NOT IN (\'b\'\'c\', \'é\') GROUP BY "Kind"',
    "FROM pums SELECT COUNT(*) WHERE married = TRUE -- trailing comment",
    "SELECT age_band, SUM(household_size) FROM citizens WHERE claims_housing_benefit = FALSE "
    "AND -5 < age GROUP BY age_band",
]
INTERESTING_BYTES = [b"\x00", b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f", b"'", b'"', b"(", b")"]
INTERESTING_BYTES += [b"/*", b"*/", b"--", b"$$", b"\\", b";", b",", b" NOT ", b" OR ", b"\n", b"\r", b"\t"]
_TOKEN = re.compile(r"\s+|'(?:[^']|'')*'|\"[^\"]*\"|[A-Za-z_]\w*|\d[\w.]*|[<>!]=|<>|.", re.DOTALL)


def tokenize(text: str) -> list[str]:
    """A rough SQL tokenization (enough to mutate at token granularity)."""
    return _TOKEN.findall(text)


@st.composite
def byte_mutated(draw: st.DrawFn, seeds: Sequence[str] = SEEDS) -> str:
    """A seed query mutated at the byte level (bit flips, NUL and invalid UTF-8 inserted, ranges
    deleted, duplicated, swapped, spliced from another seed), decoded with surrogateescape so that
    bytes which are not UTF-8 become lone surrogates in the text."""
    data = bytearray(draw(st.sampled_from(seeds)).encode())
    for _ in range(draw(st.integers(1, 6))):
        n = len(data)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 16)))
        op = draw(st.sampled_from(["flip", "insert", "random", "delete", "duplicate", "swap", "splice"]))
        if op == "flip" and i < n:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(st.sampled_from(INTERESTING_BYTES))
        elif op == "random":
            data[i:j] = draw(st.binary(min_size=1, max_size=6))
        elif op == "delete":
            del data[i:j]
        elif op == "duplicate":
            data[j:j] = data[i:j] * draw(st.integers(1, 3))
        elif op == "swap":
            k = draw(st.integers(j, n))
            data[i:k] = data[j:k] + data[i:j]
        elif op == "splice":
            other = draw(st.sampled_from(seeds)).encode()
            a = draw(st.integers(0, len(other)))
            data[i:] = other[a:]
    return bytes(data).decode("utf-8", "surrogateescape")


TOKEN_POOL = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL",
    "TRUE", "COUNT", "SUM", "AVG", "(", ")", ",", "*", "=", "<>", "-", "'x'", "1", "-1", "1.5", "pums",
    "age", "sex", "income", '"Mixed Case"', "JOIN", "ORDER", "LIMIT", "UNION", "WITH", "OVER", "DISTINCT",
    "CASE", "WHEN", "THEN", "END", "SELECT 1", ";", "::", "[", "]", "{", "}", "$$", "/*", "*/", "--", "\n",
]  # fmt: skip


@st.composite
def token_mutated(draw: st.DrawFn, seeds: Sequence[str] = SEEDS) -> str:
    """A seed query mutated at the token level: tokens inserted (from a pool or the query itself),
    deleted, duplicated, swapped or replaced."""
    tokens = tokenize(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 5))):
        n = len(tokens)
        i = draw(st.integers(0, max(n - 1, 0)))
        op = draw(st.sampled_from(["insert", "self-insert", "delete", "duplicate", "swap", "replace"]))
        if op == "insert" or n == 0:
            tokens.insert(i, " " + draw(st.sampled_from(TOKEN_POOL)) + " ")
        elif op == "self-insert":
            tokens.insert(i, tokens[draw(st.integers(0, n - 1))])
        elif op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            k = draw(st.integers(0, n - 1))
            tokens[i], tokens[k] = tokens[k], tokens[i]
        else:
            tokens[i] = " " + draw(st.sampled_from(TOKEN_POOL)) + " "
    return "".join(tokens)
