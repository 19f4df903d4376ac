"""accord.query.sql: the SQL subset, its refusals, its limits and the semantic checks."""

from __future__ import annotations

import time

import pytest

from accord.errors import InvalidQuery, NotFound
from accord.query._sql_lex import prescan
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
    Not,
    Or,
    Query,
)
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.query.sql import (
    MAX_GROUPS,
    MAX_IN_LIST,
    MAX_NESTING,
    MAX_PREDICATES,
    MAX_SQL_LENGTH,
    MAX_TOKENS,
    compile_query,
    parse,
    validate,
)

COUNT, SUM, AVG = AggregateFunction.COUNT, AggregateFunction.SUM, AggregateFunction.AVG
EQ, NE, LT, LE, GT, GE = (
    ComparisonOp.EQ,
    ComparisonOp.NE,
    ComparisonOp.LT,
    ComparisonOp.LE,
    ComparisonOp.GT,
    ComparisonOp.GE,
)
STAR = Aggregate(COUNT, None, "count")


def schema(name: str = "pums") -> DatasetSchema:
    return DatasetSchema(
        name=name,
        columns=(
            ColumnSpec("pid", ColumnType.INTEGER),
            ColumnSpec("age", ColumnType.INTEGER, 0, 100),
            ColumnSpec("income", ColumnType.INTEGER, 0, 500_000),
            ColumnSpec("sex", ColumnType.INTEGER, categories=(0, 1)),
            ColumnSpec("educ", ColumnType.INTEGER, categories=tuple(range(1, 17))),
            ColumnSpec("married", ColumnType.BOOLEAN, categories=(True, False)),
            ColumnSpec("name", ColumnType.STRING),
            ColumnSpec("district", ColumnType.STRING, categories=("north", "south", "east")),
            ColumnSpec("score", ColumnType.FLOAT, 0.0, 1.0),
            ColumnSpec("weight", ColumnType.FLOAT),
        ),
        privacy_unit="pid",
        max_rows_per_person=1,
    )


CATALOG = {"pums": schema(), "other": schema("other")}


def refused(sql: str) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as info:
        parse(sql)
    return info.value


# ---- happy paths -----------------------------------------------------------------------------


def test_full_query_tree() -> None:
    q = parse(
        "SELECT sex, COUNT(*) AS n, COUNT(income), SUM(income), AVG(age) FROM pums "
        "WHERE age >= 18 AND district IN ('north', 'south') GROUP BY sex;"
    )
    assert q == Query(
        dataset="pums",
        outputs=(
            GroupColumn("sex", "sex"),
            Aggregate(COUNT, None, "n"),
            Aggregate(COUNT, "income", "count_income"),
            Aggregate(SUM, "income", "sum_income"),
            Aggregate(AVG, "age", "avg_age"),
        ),
        group_by=("sex",),
        where=And((Comparison("age", GE, 18), InList("district", ("north", "south")))),
    )


def test_default_aliases_and_group_alias() -> None:
    q = parse("select educ as level, count(*), sex, sum(income) as total from pums group by sex, educ")
    assert q.outputs == (
        GroupColumn("educ", "level"),
        STAR,
        GroupColumn("sex", "sex"),
        Aggregate(SUM, "income", "total"),
    )
    assert q.group_by == ("educ", "sex")  # the SELECT order: released keys follow it
    assert q.where is None


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ("age = 5", Comparison("age", EQ, 5)),
        ("age <> 5", Comparison("age", NE, 5)),
        ("age != 5", Comparison("age", NE, 5)),
        ("age < 5", Comparison("age", LT, 5)),
        ("age <= 5", Comparison("age", LE, 5)),
        ("age > 5", Comparison("age", GT, 5)),
        ("age >= 5", Comparison("age", GE, 5)),
        ("5 = age", Comparison("age", EQ, 5)),
        ("5 <> age", Comparison("age", NE, 5)),
        ("5 < age", Comparison("age", GT, 5)),
        ("5 <= age", Comparison("age", GE, 5)),
        ("5 > age", Comparison("age", LT, 5)),
        ("5 >= age", Comparison("age", LE, 5)),
        ("score > -0.5", Comparison("score", GT, -0.5)),
        ("age > -3", Comparison("age", GT, -3)),
        ("-3 < age", Comparison("age", GT, -3)),
        ("score < 1e-3", Comparison("score", LT, 0.001)),
        ("name = 'O''Brien'", Comparison("name", EQ, "O'Brien")),
        ("married = TRUE", Comparison("married", EQ, True)),
        ("married = false", Comparison("married", EQ, False)),
        ("age IN (1, 2, 3)", InList("age", (1, 2, 3))),
        ("age NOT IN (1)", InList("age", (1,), negated=True)),
        ("age BETWEEN -1 AND 2", Between("age", -1, 2)),
        ("age NOT BETWEEN 1 AND 2", Between("age", 1, 2, negated=True)),
        ("name IS NULL", IsNull("name")),
        ("name IS NOT NULL", IsNull("name", negated=True)),
        ("NOT (age = 1)", Not(Comparison("age", EQ, 1))),
        ("NOT (age IN (1))", Not(InList("age", (1,)))),
        ("((age = 1))", Comparison("age", EQ, 1)),
        ("age = (1)", Comparison("age", EQ, 1)),
        ("age = 9223372036854775807", Comparison("age", EQ, 2**63 - 1)),
        ("age = -9223372036854775808", Comparison("age", EQ, -(2**63))),
    ],
)
def test_where_leaves(cond: str, expected: object) -> None:
    assert parse(f"SELECT COUNT(*) FROM pums WHERE {cond}").where == expected


def test_boolean_structure_and_precedence() -> None:
    a, b, c, d = (Comparison(x, EQ, 1) for x in ("a", "b", "c", "d"))
    where = parse("SELECT COUNT(*) FROM t WHERE a = 1 AND b = 1 AND c = 1 OR d = 1").where
    assert where == Or((And((a, b, c)), d))
    where = parse("SELECT COUNT(*) FROM t WHERE a = 1 AND (b = 1 OR c = 1) AND NOT d = 1").where
    assert where == And((a, Or((b, c)), Not(d)))
    where = parse("SELECT COUNT(*) FROM t WHERE (a = 1 AND b = 1) AND c = 1").where
    assert where == And((And((a, b)), c))


def test_keywords_case_insensitive_identifiers_keep_case() -> None:
    q = parse('sElEcT "Sex", CoUnT(*) AS "Total N" fRoM "PUMS" wHeRe Age bEtWeEn 1 AnD 2 gRoUp By "Sex"')
    assert q == Query(
        dataset="PUMS",
        outputs=(GroupColumn("Sex", "Sex"), Aggregate(COUNT, None, "Total N")),
        group_by=("Sex",),
        where=Between("Age", 1, 2),
    )


def test_comments_whitespace_and_semicolon() -> None:
    q = parse("-- sex split\n  SELECT /* (((( */ COUNT(*)\n\tFROM pums ;  ")
    assert q == Query("pums", (STAR,))


def test_parentheses_inside_strings_do_not_count_towards_nesting() -> None:
    deep = "(" * (MAX_NESTING * 3)
    q = parse(f"SELECT COUNT(*) FROM pums WHERE name = '{deep}' AND \"{deep}\" IS NULL -- {deep}")
    assert q.where == And((Comparison("name", EQ, deep), IsNull(deep)))


def test_nesting_at_the_limit_is_accepted() -> None:
    cond = "(" * MAX_NESTING + "age = 1" + ")" * MAX_NESTING
    assert parse(f"SELECT COUNT(*) FROM pums WHERE {cond}").where == Comparison("age", EQ, 1)


# ---- refusals --------------------------------------------------------------------------------

REFUSALS = [
    # (id, sql, field, words the message must contain)
    ("inner-join", "SELECT COUNT(*) FROM a JOIN b ON a.x = b.x", "from", ["JOIN", "one dataset"]),
    ("left-join", "SELECT COUNT(*) FROM a LEFT JOIN b ON a.x = b.x", "from", ["JOIN"]),
    ("cross-join", "SELECT COUNT(*) FROM a CROSS JOIN b", "from", ["JOIN"]),
    ("comma-join", "SELECT COUNT(*) FROM a, b", "from", ["JOIN", "comma"]),
    ("subquery-from", "SELECT COUNT(*) FROM (SELECT * FROM pums)", "from", ["subquery"]),
    ("subquery-in", "SELECT COUNT(*) FROM pums WHERE age IN (SELECT age FROM t)", "where", ["subquery"]),
    ("subquery-cmp", "SELECT COUNT(*) FROM pums WHERE age = (SELECT 1)", "where", ["subquery"]),
    ("subquery-select", "SELECT (SELECT 1), COUNT(*) FROM pums", "select", ["subquery"]),
    ("exists", "SELECT COUNT(*) FROM pums WHERE EXISTS (SELECT 1)", "where", ["EXISTS"]),
    ("cte", "WITH x AS (SELECT 1) SELECT COUNT(*) FROM x", "with", ["WITH", "single"]),
    ("union", "SELECT COUNT(*) FROM a UNION SELECT COUNT(*) FROM b", "sql", ["UNION", "each SELECT"]),
    ("union-all", "SELECT COUNT(*) FROM a UNION ALL SELECT COUNT(*) FROM b", "sql", ["UNION"]),
    ("except", "SELECT COUNT(*) FROM a EXCEPT SELECT COUNT(*) FROM b", "sql", ["EXCEPT"]),
    ("select-distinct", "SELECT DISTINCT COUNT(*) FROM pums", "select", ["DISTINCT"]),
    ("count-distinct", "SELECT COUNT(DISTINCT sex) FROM pums", "select", ["DISTINCT", "COUNT(*)"]),
    ("window", "SELECT COUNT(*) OVER () FROM pums", "select", ["window", "GROUP BY"]),
    ("min", "SELECT MIN(age) FROM pums", "select", ["MIN", "COUNT"]),
    ("max", "SELECT MAX(age) FROM pums", "select", ["MAX"]),
    ("other-function", "SELECT MEDIAN(age) FROM pums", "select", ["MEDIAN"]),
    ("unknown-function", "SELECT FOO(age) FROM pums", "select", ["FOO", "COUNT"]),
    ("arithmetic-select", "SELECT COUNT(*) + 1 FROM pums", "select", ["arithmetic", "yourself"]),
    ("arithmetic-aggregate", "SELECT SUM(income * 2) FROM pums", "select", ["arithmetic"]),
    ("count-literal", "SELECT COUNT(1) FROM pums", "select", ["plain column", "COUNT(1)"]),
    ("sum-star", "SELECT SUM(*) FROM pums", "select", ["SUM(*)", "column"]),
    ("count-two", "SELECT COUNT(age, sex) FROM pums", "select", ["one column"]),
    ("case", "SELECT SUM(CASE WHEN age > 1 THEN 1 END) FROM pums", "select", ["CASE"]),
    ("cast", "SELECT COUNT(*) FROM pums WHERE CAST(age AS TEXT) = '1'", "where", ["cast"]),
    ("filter", "SELECT COUNT(*) FILTER (WHERE age > 1) FROM pums", "select", ["FILTER", "WHERE"]),
    ("order-by", "SELECT sex, COUNT(*) FROM pums GROUP BY sex ORDER BY sex", "order_by", ["ORDER BY"]),
    ("limit", "SELECT COUNT(*) FROM pums LIMIT 10", "limit", ["LIMIT"]),
    ("offset", "SELECT COUNT(*) FROM pums OFFSET 10", "limit", ["OFFSET"]),
    (
        "having",
        "SELECT sex, COUNT(*) FROM pums GROUP BY sex HAVING COUNT(*) > 5",
        "having",
        ["HAVING", "WHERE"],
    ),
    ("qualify", "SELECT COUNT(*) FROM pums QUALIFY 1", "qualify", ["QUALIFY"]),
    ("select-star", "SELECT * FROM pums", "select", ["SELECT *", "COUNT(*)"]),
    ("qualified-star", "SELECT pums.*, COUNT(*) FROM pums", "select", ["pums.*"]),
    ("bare-column", "SELECT age, COUNT(*) FROM pums", "select", ["age", "GROUP BY"]),
    ("bare-column-other-group", "SELECT age, COUNT(*) FROM pums GROUP BY sex", "select", ["age", "GROUP BY"]),
    ("literal-output", "SELECT 1, COUNT(*) FROM pums", "select", ["1", "aggregates"]),
    ("no-aggregate", "SELECT sex FROM pums GROUP BY sex", "select", ["aggregate", "COUNT(*)"]),
    ("duplicate-alias", "SELECT COUNT(*), COUNT(*) FROM pums", "select", ["count", "alias"]),
    ("group-expression", "SELECT COUNT(*) FROM pums GROUP BY age / 10", "group_by", ["arithmetic"]),
    ("group-position", "SELECT sex, COUNT(*) FROM pums GROUP BY 1", "group_by", ["GROUP BY", "column name"]),
    ("group-all", "SELECT sex, COUNT(*) FROM pums GROUP BY ALL", "group_by", ["GROUP BY ALL"]),
    ("group-rollup", "SELECT COUNT(*) FROM pums GROUP BY ROLLUP (sex)", "group_by", ["ROLLUP"]),
    ("group-twice", "SELECT COUNT(*) FROM pums GROUP BY sex, sex", "group_by", ["sex", "twice"]),
    ("column-vs-column", "SELECT COUNT(*) FROM pums WHERE age = income", "where", ["two columns", "literal"]),
    ("literal-vs-literal", "SELECT COUNT(*) FROM pums WHERE 1 = 1", "where", ["1 = 1", "column"]),
    ("column-vs-expression", "SELECT COUNT(*) FROM pums WHERE age = income + 1", "where", ["arithmetic"]),
    ("bare-where-column", "SELECT COUNT(*) FROM pums WHERE married", "where", ["bare column", "= TRUE"]),
    ("eq-null", "SELECT COUNT(*) FROM pums WHERE name = NULL", "where", ["NULL", "IS NULL"]),
    ("in-null", "SELECT COUNT(*) FROM pums WHERE age IN (1, NULL)", "where", ["NULL", "IS NULL"]),
    ("is-true", "SELECT COUNT(*) FROM pums WHERE married IS TRUE", "where", ["IS TRUE", "= TRUE"]),
    ("like", "SELECT COUNT(*) FROM pums WHERE name LIKE 'a%'", "where", ["LIKE", "IN"]),
    (
        "between-symmetric",
        "SELECT COUNT(*) FROM pums WHERE age BETWEEN SYMMETRIC 1 AND 2",
        "where",
        ["SYMMETRIC"],
    ),
    ("empty-in", "SELECT COUNT(*) FROM pums WHERE age IN ()", "where", ["IN ()", "at least one"]),
    ("parameter", "SELECT COUNT(*) FROM pums WHERE age = ?", "where", ["parameter", "literal"]),
    ("double-negative", "SELECT COUNT(*) FROM pums WHERE age = - -1", "where", ["comparison"]),
    ("negative-string", "SELECT COUNT(*) FROM pums WHERE name = -'x'", "where", ["literal"]),
    ("huge-int", "SELECT COUNT(*) FROM pums WHERE age = 99999999999999999999", "where", ["64 bits"]),
    ("infinite-float", "SELECT COUNT(*) FROM pums WHERE score < 1e999", "where", ["finite"]),
    ("heredoc", "SELECT COUNT(*) FROM pums WHERE name = $$x$$", "where", ["$$", "single quotes"]),
    ("qualified-column", "SELECT COUNT(*) FROM pums WHERE pums.age = 1", "where", ["pums.age", "prefix"]),
    ("table-alias", "SELECT COUNT(*) FROM pums AS p", "from", ["alias"]),
    ("qualified-table", "SELECT COUNT(*) FROM main.pums", "from", ["main.pums", "dataset alone"]),
    ("table-function", "SELECT COUNT(*) FROM read_csv('x.csv')", "from", ["READ_CSV"]),
    ("no-from", "SELECT COUNT(*)", "from", ["FROM"]),
    ("multiple-statements", "SELECT COUNT(*) FROM a; SELECT COUNT(*) FROM b", "sql", ["2 statements"]),
    ("insert", "INSERT INTO pums VALUES (1)", "sql", ["INSERT", "SELECT"]),
    ("drop", "DROP TABLE pums", "sql", ["DROP", "SELECT"]),
    ("delete", "DELETE FROM pums", "sql", ["DELETE", "SELECT"]),
    ("update", "UPDATE pums SET age = 1", "sql", ["UPDATE", "SELECT"]),
    ("command", "VACUUM", "sql", ["VACUUM", "SELECT"]),
    ("command-call", "CALL something()", "sql", ["CALL", "SELECT"]),
    ("parenthesised-query", "(SELECT COUNT(*) FROM pums)", "sql", ["parenthesised"]),
    ("empty", "", "sql", ["empty"]),
    ("blank", "   \n\t ", "sql", ["empty"]),
    ("only-semicolon", ";", "sql", ["no statement"]),
    ("only-comment", "-- nothing", "sql", ["no statement"]),
    ("syntax-error", "SELECT COUNT(* FROM pums", "sql", ["syntax error", "line 1, column"]),
    ("garbage", "SELECT FROM WHERE", "sql", ["SELECT"]),
    ("unterminated-string", "SELECT COUNT(*) FROM pums WHERE name = 'abc", "sql", ["unterminated"]),
]


@pytest.mark.parametrize(("sql", "field", "words"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_construct(sql: str, field: str, words: list[str]) -> None:
    err = refused(sql)
    assert type(err) is InvalidQuery
    for word in words:
        assert word.lower() in err.message.lower(), (word, err.message)
    assert field in {v.field for v in err.violations}, err.violations
    # every message says what to do instead, not only what is wrong
    advice = ("write", "use", "remove", "add", "run", "list", "name", "send", "compute", "compare", "drop")
    advice += ("filter", "sort", "select", "such as")
    assert any(w in err.message.lower() for w in advice)


# ---- limits ----------------------------------------------------------------------------------


def _fast_refusal(sql: str) -> InvalidQuery:
    started = time.perf_counter()
    err = refused(sql)
    assert time.perf_counter() - started < 1.0
    return err


def test_oversized_query_is_refused_fast() -> None:
    sql = "SELECT COUNT(*) FROM pums WHERE name = '" + "x" * (1 << 20) + "'"
    err = _fast_refusal(sql)
    assert f"{len(sql)} characters" in err.message and str(MAX_SQL_LENGTH) in err.message
    assert err.violations[0].field == "sql"


def test_query_at_the_length_limit_is_parsed() -> None:
    head = "SELECT COUNT(*) FROM pums WHERE name = '"
    sql = head + "x" * (MAX_SQL_LENGTH - len(head) - 1) + "'"
    assert len(sql) == MAX_SQL_LENGTH
    assert isinstance(parse(sql).where, Comparison)


def test_deep_parentheses_are_refused_fast() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE " + "(" * 10_000 + "age = 1" + ")" * 10_000)
    assert "parentheses" in err.message and str(MAX_NESTING) in err.message


def test_deep_parentheses_in_select_are_refused() -> None:
    err = _fast_refusal("SELECT " + "(" * 33 + "1" + ")" * 33 + ", COUNT(*) FROM pums")
    assert "nests parentheses" in err.message


def test_long_not_chain_is_refused_fast() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE " + "NOT " * 15_000 + "age = 1")
    assert "NOT" in err.message and str(MAX_NESTING) in err.message


def test_long_minus_chain_is_refused_fast() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE age = " + "- " * 20_000 + "1")
    assert str(MAX_NESTING) in err.message


def test_parentheses_hidden_after_a_comment_still_count() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE /* it's */ " + "(" * 40 + "age = 1" + ")" * 40)
    assert "parentheses" in err.message
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE /* /* */ ' */ " + "(" * 40 + "age=1" + ")" * 40)
    assert "parentheses" in err.message
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE $$ ' $$ = " + "(" * 40 + "1" + ")" * 40)
    assert "parentheses" in err.message


def test_escaped_quote_in_e_string_does_not_hide_parentheses() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE name = e'\\'' OR " + "(" * 40 + "age=1" + ")" * 40)
    assert "parentheses" in err.message


def test_exact_token_pass_catches_what_the_cheap_scan_misses() -> None:
    # The cheap scan does not know sqlglot's heredoc tag rules and thinks the parentheses sit
    # inside a string; the second pass over sqlglot's own tokens still refuses them.
    sql = "SELECT COUNT(*) FROM pums WHERE name = $x.y$ ' $x.y$ AND " + "(" * 40 + "age = 1" + ")" * 40
    prescan(sql)
    err = _fast_refusal(sql)
    assert "parentheses" in err.message


def test_nested_brackets_and_unparenthesised_recursion_are_refused() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE age = " + "[" * 40 + "]" * 40)
    assert "brackets" in err.message
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE age = " + "CASE WHEN " * 3000 + "1")
    assert "nested too deeply" in err.message


def test_token_limit() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE age = " + "+".join(["1"] * 30_000))
    assert f"more than {MAX_TOKENS} tokens" in err.message


def test_in_list_limit() -> None:
    ok = ", ".join(str(i) for i in range(MAX_IN_LIST))
    where = parse(f"SELECT COUNT(*) FROM pums WHERE age IN ({ok})").where
    assert isinstance(where, InList) and len(where.values) == MAX_IN_LIST
    err = _fast_refusal(f"SELECT COUNT(*) FROM pums WHERE age IN ({ok}, 1)")
    assert f"{MAX_IN_LIST + 1} values" in err.message and "IN list" in err.message


def test_too_many_list_items_refused_before_parsing() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE age IN (" + ",".join(["1"] * 20_000) + ")")
    assert "list items" in err.message


def test_predicate_limit() -> None:
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE " + " OR ".join(["age = 1"] * (MAX_PREDICATES + 1)))
    assert str(MAX_PREDICATES) in err.message and err.violations[0].field == "where"
    err = _fast_refusal("SELECT COUNT(*) FROM pums WHERE " + " AND ".join(["a=1"] * 8000))
    assert str(MAX_PREDICATES) in err.message


def test_long_flat_chain_below_the_limit_is_flattened() -> None:
    where = parse("SELECT COUNT(*) FROM pums WHERE " + " AND ".join(["age = 1"] * 500)).where
    assert isinstance(where, And) and len(where.operands) == 500


def test_non_string_input_is_refused() -> None:
    with pytest.raises(InvalidQuery):
        parse(b"SELECT COUNT(*) FROM pums")  # type: ignore[arg-type]


# ---- validate / compile_query ----------------------------------------------------------------


def test_compile_valid_query() -> None:
    q = compile_query(
        "SELECT sex, district, COUNT(*), SUM(income), AVG(score) FROM pums "
        "WHERE age BETWEEN 18 AND 65 AND married = TRUE AND score > 0 AND score < 0.5 "
        "AND name IS NOT NULL AND district NOT IN ('east') GROUP BY sex, district",
        CATALOG,
    )
    assert q.dataset == "pums" and q.group_by == ("sex", "district")


def test_integer_literal_fits_float_column() -> None:
    compile_query("SELECT COUNT(*) FROM pums WHERE score >= 0 AND score IN (1, 0.5)", CATALOG)


def test_unknown_dataset_lists_available() -> None:
    with pytest.raises(NotFound) as info:
        compile_query("SELECT COUNT(*) FROM pum", CATALOG)
    msg = info.value.message
    assert "'pum'" in msg and "did you mean pums" in msg and "other, pums" in msg
    assert info.value.violations[0].field == "from"


def test_unknown_column_suggests_and_lists() -> None:
    with pytest.raises(NotFound) as info:
        compile_query("SELECT SUM(incme) FROM pums", CATALOG)
    msg = info.value.message
    assert "'incme'" in msg and "did you mean income" in msg and "age" in msg
    assert info.value.violations[0].field == "select"


def test_unknown_column_case_mismatch_is_suggested() -> None:
    with pytest.raises(NotFound) as info:
        compile_query("SELECT COUNT(*) FROM pums WHERE Age > 3", CATALOG)
    assert "did you mean age" in info.value.message
    assert info.value.violations[0].field == "where"


def test_unknown_group_column() -> None:
    with pytest.raises(NotFound) as info:
        compile_query("SELECT region, COUNT(*) FROM pums GROUP BY region", CATALOG)
    assert "'region'" in info.value.message and info.value.violations[0].field == "group_by"


@pytest.mark.parametrize(
    ("sql", "field", "words"),
    [
        ("SELECT SUM(name) FROM pums", "select", ["SUM(name)", "string", "numeric"]),
        ("SELECT AVG(married) FROM pums", "select", ["AVG(married)", "boolean"]),
        ("SELECT SUM(weight) FROM pums", "select", ["weight", "declare lower/upper bounds", "node config"]),
        ("SELECT AVG(weight) FROM pums", "select", ["weight", "bounds"]),
        ("SELECT name, COUNT(*) FROM pums GROUP BY name", "group_by", ["name", "categories", "node config"]),
        ("SELECT age, COUNT(*) FROM pums GROUP BY age", "group_by", ["age", "categories"]),
        ("SELECT COUNT(pid) FROM pums", "select", ["pid", "privacy unit"]),
        ("SELECT SUM(pid) FROM pums", "select", ["pid", "privacy unit"]),
        ("SELECT pid, COUNT(*) FROM pums GROUP BY pid", "group_by", ["pid", "privacy unit"]),
        ("SELECT COUNT(*) FROM pums WHERE pid = 3", "where", ["pid", "privacy unit"]),
        ("SELECT COUNT(*) FROM pums WHERE pid IS NOT NULL", "where", ["pid", "privacy unit"]),
        ("SELECT COUNT(*) FROM pums WHERE age = 'ten'", "where", ["age", "integer", "'ten'"]),
        ("SELECT COUNT(*) FROM pums WHERE age > 17.5", "where", ["age", "integer", "17.5"]),
        ("SELECT COUNT(*) FROM pums WHERE age = TRUE", "where", ["age", "integer"]),
        ("SELECT COUNT(*) FROM pums WHERE name = 3", "where", ["name", "string"]),
        ("SELECT COUNT(*) FROM pums WHERE married = 1", "where", ["married", "boolean", "TRUE or FALSE"]),
        ("SELECT COUNT(*) FROM pums WHERE score IN (0.5, 'x')", "where", ["score", "float"]),
        ("SELECT COUNT(*) FROM pums WHERE score = TRUE", "where", ["score", "float"]),
        ("SELECT COUNT(*) FROM pums WHERE sex BETWEEN 'a' AND 1", "where", ["sex", "'a'"]),
    ],
)
def test_semantic_refusals(sql: str, field: str, words: list[str]) -> None:
    with pytest.raises(InvalidQuery) as info:
        compile_query(sql, CATALOG)
    assert type(info.value) is InvalidQuery
    for word in words:
        assert word.lower() in info.value.message.lower(), (word, info.value.message)
    assert field in {v.field for v in info.value.violations}


def test_all_semantic_problems_are_reported_together() -> None:
    with pytest.raises(InvalidQuery) as info:
        compile_query("SELECT name, SUM(name), AVG(weight) FROM pums WHERE age = 'x' GROUP BY name", CATALOG)
    fields = [v.field for v in info.value.violations]
    assert fields.count("select") == 2 and "where" in fields and "group_by" in fields


def test_too_many_groups() -> None:
    big = DatasetSchema(
        name="big",
        columns=(
            ColumnSpec("pid", ColumnType.INTEGER),
            ColumnSpec("a", ColumnType.INTEGER, categories=tuple(range(1000))),
            ColumnSpec("b", ColumnType.INTEGER, categories=tuple(range(1000))),
        ),
        privacy_unit="pid",
        max_rows_per_person=1,
    )
    validate(parse("SELECT a, COUNT(*) FROM big GROUP BY a"), big)
    with pytest.raises(InvalidQuery) as info:
        validate(parse("SELECT a, b, COUNT(*) FROM big GROUP BY a, b"), big)
    assert "1000000 groups" in info.value.message and str(MAX_GROUPS) in info.value.message


def test_validate_against_the_wrong_schema() -> None:
    with pytest.raises(NotFound):
        validate(parse("SELECT COUNT(*) FROM pums"), schema("other"))


def test_messages_depend_only_on_query_and_metadata() -> None:
    def message(sql: str) -> str:
        with pytest.raises(InvalidQuery) as info:
            compile_query(sql, CATALOG)
        return info.value.message

    sql = "SELECT SUM(name) FROM pums WHERE age = 'x'"
    assert message(sql) == message(sql)
