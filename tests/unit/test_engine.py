"""node.duckdb.engine + node.duckdb.sqlrender: exact answers, compared with an independent
computation in Python.

The reference side reads the files with the csv module (or keeps the synthetic rows in Python) and
evaluates predicates with SQL's three-valued logic by hand; nothing here hard-codes a result.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from accord.errors import InternalError, NotFound, Unavailable
from accord.node.config import DatasetConfig
from accord.node.duckdb.catalog import LoadedDataset, load_dataset
from accord.node.duckdb.engine import Engine, ExactAnswer
from accord.node.duckdb.sqlrender import render
from accord.node.plan import MeasureKind, Measurement, group_keys
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
    Predicate,
    Query,
)
from accord.query.schema import ColumnSpec, ColumnType
from tests.unit.nodedata import PUMS_COLUMNS, dataset, pums, pums_rows, write_csv, write_parquet

Row = dict[str, Any]
COUNT_STAR = Measurement(MeasureKind.COUNT, None)


def count(column: str | None = None, alias: str = "n") -> Aggregate:
    return Aggregate(AggregateFunction.COUNT, column, alias)


def total(column: str, alias: str = "s") -> Aggregate:
    return Aggregate(AggregateFunction.SUM, column, alias)


def query(
    *aggs: Aggregate, group_by: tuple[str, ...] = (), where: Predicate | None = None, ds: str = "d"
) -> Query:
    outputs: tuple[GroupColumn | Aggregate, ...] = (*(GroupColumn(g, g) for g in group_by), *aggs)
    return Query(ds, outputs, group_by, where)


def engine_for(*configs: DatasetConfig) -> tuple[Engine, dict[str, LoadedDataset]]:
    con = duckdb.connect()
    loaded = {c.schema.name: load_dataset(c, con) for c in configs}
    return Engine(con, loaded), loaded


def run(eng: Engine, cfg: DatasetConfig, q: Query) -> ExactAnswer:
    answer = eng.execute(q, cfg.schema)
    assert answer.groups == group_keys(q, cfg.schema)
    return answer


def clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


# ---- a reference evaluator with SQL NULL semantics ---------------------------------------------


def _and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _not(v: bool | None) -> bool | None:
    return None if v is None else not v


_OPS: dict[ComparisonOp, Callable[[Any, Any], bool]] = {
    ComparisonOp.EQ: lambda a, b: a == b,
    ComparisonOp.NE: lambda a, b: a != b,
    ComparisonOp.LT: lambda a, b: a < b,
    ComparisonOp.LE: lambda a, b: a <= b,
    ComparisonOp.GT: lambda a, b: a > b,
    ComparisonOp.GE: lambda a, b: a >= b,
}


def ev(p: Predicate, row: Row) -> bool | None:
    if isinstance(p, And):
        return _and([ev(o, row) for o in p.operands])
    if isinstance(p, Or):
        return _or([ev(o, row) for o in p.operands])
    if isinstance(p, Not):
        return _not(ev(p.operand, row))
    x = row[p.column]
    if isinstance(p, IsNull):
        return (x is not None) if p.negated else (x is None)
    if isinstance(p, Comparison):
        return None if x is None or p.value is None else _OPS[p.op](x, p.value)
    if isinstance(p, Between):
        r = _and(
            [
                ev(Comparison(p.column, ComparisonOp.GE, p.low), row),
                ev(Comparison(p.column, ComparisonOp.LE, p.high), row),
            ]
        )
        return _not(r) if p.negated else r
    assert isinstance(p, InList)
    r = _or([ev(Comparison(p.column, ComparisonOp.EQ, v), row) for v in p.values])
    return _not(r) if p.negated else r


# ---- synthetic data with NULLs -----------------------------------------------------------------

SYN_COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER),
    ColumnSpec("age", ColumnType.INTEGER, 10, 80),
    ColumnSpec("score", ColumnType.FLOAT, -1.0, 1.0),
    ColumnSpec("district", ColumnType.STRING, categories=("north", "south", "east")),  # east: always empty
    ColumnSpec("flag", ColumnType.BOOLEAN, categories=(True, False)),
)


def synthetic_rows(n: int = 400, seed: int = 5) -> list[Row]:
    rng = random.Random(seed)  # test data only
    rows = []
    for i in range(n):
        rows.append(
            {
                "pid": i,
                "age": rng.choice([None, *range(0, 95)]),  # some outside [10, 80]: clamp mode
                "score": rng.choice([None, round(rng.uniform(-2, 2), 3)]),
                "district": rng.choice([None, "north", "south", "west"]),  # west: undeclared
                "flag": rng.choice([None, True, False]),
            }
        )
    return rows


@pytest.fixture
def syn(tmp_path: Path) -> tuple[Engine, DatasetConfig, list[Row]]:
    rows = synthetic_rows()
    path = write_parquet(tmp_path / "syn.parquet", {c: [r[c] for r in rows] for c in rows[0]})
    cfg = dataset(path, SYN_COLUMNS, on_violation="clamp")
    eng, loaded = engine_for(cfg)
    assert loaded["d"].report.persons_over_limit == 0
    return eng, cfg, rows


PREDICATES: list[Predicate] = [
    *(Comparison("age", op, 40) for op in ComparisonOp),
    Comparison("score", ComparisonOp.LT, 0.25),
    Comparison("age", ComparisonOp.LT, 40.5),  # a float literal on an integer column keeps its fraction
    Comparison("district", ComparisonOp.EQ, "north"),
    Comparison("district", ComparisonOp.NE, "north"),
    Comparison("flag", ComparisonOp.EQ, True),
    Comparison("age", ComparisonOp.EQ, None),  # = NULL is never true
    InList("district", ("north", "west")),
    InList("district", ("north", "west"), negated=True),
    InList("age", (20, 30, None)),
    InList("age", (20, 30, None), negated=True),  # NOT IN with a NULL: never true
    Between("age", 20, 50),
    Between("score", -0.5, 0.5, negated=True),
    IsNull("score"),
    IsNull("district", negated=True),
    And((Comparison("age", ComparisonOp.GE, 30), Comparison("flag", ComparisonOp.EQ, False))),
    Or((IsNull("age"), Comparison("district", ComparisonOp.EQ, "south"))),
    Not(Comparison("age", ComparisonOp.GT, 50)),
    Not(Or((Comparison("score", ComparisonOp.GT, 0.0), InList("district", ("south",))))),
    And((Or((Comparison("flag", ComparisonOp.EQ, True), IsNull("flag"))), Not(Between("age", 30, 60)))),
    Comparison("district", ComparisonOp.EQ, "north' OR '1'='1"),  # just a value, never SQL
]


def reference(rows: list[Row], q: Query, cfg: DatasetConfig) -> dict[Measurement, list[int | float]]:
    """COUNT(*), COUNT(col), clamped SUM per public group, with no bounding (k >= rows per person)."""
    kept = [r for r in rows if q.where is None or ev(q.where, r) is True]
    groups = group_keys(q, cfg.schema)
    out: dict[Measurement, list[int | float]] = {}
    for agg in q.aggregates:
        col = agg.column
        by_group: dict[tuple[Literal, ...], list[Row]] = defaultdict(list)
        for r in kept:
            by_group[tuple(r[g] for g in q.group_by)].append(r)
        if agg.function is AggregateFunction.COUNT:
            m = Measurement(MeasureKind.COUNT, col)
            out[m] = [sum(1 for r in by_group[g] if col is None or r[col] is not None) for g in groups]
        else:
            assert col is not None
            spec = cfg.schema.column(col)
            assert spec is not None and spec.lower is not None and spec.upper is not None
            lo, hi = spec.lower, spec.upper
            m = Measurement(MeasureKind.SUM, col)
            out[m] = [sum(clamp(r[col], lo, hi) for r in by_group[g] if r[col] is not None) for g in groups]
    return out


@pytest.mark.parametrize("pred", PREDICATES, ids=repr)
def test_where_each_predicate_form(syn: tuple[Engine, DatasetConfig, list[Row]], pred: Predicate) -> None:
    eng, cfg, rows = syn
    q = query(count(), count("score", "ns"), total("age", "sa"), total("score", "ss"), where=pred)
    answer = run(eng, cfg, q)
    expected = reference(rows, q, cfg)
    for m, values in expected.items():
        got = answer.values[m]
        assert got == pytest.approx(values), m
    assert all(isinstance(v, int) for v in answer.values[Measurement(MeasureKind.SUM, "age")])
    assert all(isinstance(v, float) for v in answer.values[Measurement(MeasureKind.SUM, "score")])


def test_literals_are_parameters_never_sql_text(syn: tuple[Engine, DatasetConfig, list[Row]]) -> None:
    _, cfg, _ = syn
    evil = "north'; DROP TABLE x; --"
    q = query(total("age"), where=InList("district", (evil, "south")))
    rendered = render(q, cfg.schema, True, '"t"')
    assert evil in rendered.params and "DROP" not in rendered.sql and "'" not in rendered.sql
    assert 10 in rendered.params and 80 in rendered.params  # clamping bounds are parameters too


def test_grouping_public_groups_only_including_empty(syn: tuple[Engine, DatasetConfig, list[Row]]) -> None:
    eng, cfg, rows = syn
    q = query(count(), total("score"), count("age", "na"), group_by=("district", "flag"))
    answer = run(eng, cfg, q)
    assert len(answer.groups) == 6 and ("east", True) in answer.groups
    east = answer.groups.index(("east", False))
    assert (
        answer.values[COUNT_STAR][east] == 0
        and answer.values[Measurement(MeasureKind.SUM, "score")][east] == 0.0
    )
    expected = reference(rows, q, cfg)  # rows with district west/NULL or flag NULL are in no group
    for m, values in expected.items():
        assert answer.values[m] == pytest.approx(values)
    assert sum(answer.values[COUNT_STAR]) < len(rows)


def test_unvalidated_queries_fail_closed(syn: tuple[Engine, DatasetConfig, list[Row]]) -> None:
    """Property: a query that skipped validation (a bug upstream) is never run: the renderer raises
    InternalError rather than a second, differently worded refusal."""
    eng, cfg, _ = syn
    for where in (
        Comparison("district", ComparisonOp.EQ, 3),
        Comparison("flag", ComparisonOp.EQ, 1),
        IsNull("salary"),
    ):
        with pytest.raises(InternalError, match="reached the renderer"):
            eng.execute(query(count(), where=where), cfg.schema)
    with pytest.raises(NotFound, match="no dataset 'other'"):
        eng.execute(query(count(), ds="other"), cfg.schema)


# ---- contribution bounding on the census sample -------------------------------------------------


@pytest.fixture(scope="module")
def census() -> list[Row]:
    return pums_rows()


def test_count_star_bounded_to_k_rows_per_person(census: list[Row]) -> None:
    per_person = Counter(r["pid"] for r in census)
    for k in (1, 2, 3, max(per_person.values())):
        cfg = pums(k)
        eng, loaded = engine_for(cfg)
        assert (loaded["pums"].report.persons_over_limit > 0) == (k < max(per_person.values()))
        answer = run(eng, cfg, query(count(), ds="pums"))
        assert answer.values[COUNT_STAR] == (sum(min(n, k) for n in per_person.values()),)
    assert run(*_pums_engine(1), query(count(), ds="pums")).values[COUNT_STAR] == (len(per_person),)


def _pums_engine(k: int) -> tuple[Engine, DatasetConfig]:
    cfg = pums(k)
    return engine_for(cfg)[0], cfg


def test_bounding_applies_after_where(census: list[Row]) -> None:
    where = And((Comparison("age", ComparisonOp.GT, 40), Comparison("sex", ComparisonOp.EQ, 1)))
    kept = Counter(r["pid"] for r in census if r["age"] > 40 and r["sex"] == 1)
    for k in (1, 2):
        eng, cfg = _pums_engine(k)
        answer = run(eng, cfg, query(count(), count("income", "ni"), where=where, ds="pums"))
        expected = sum(min(n, k) for n in kept.values())
        assert answer.values[COUNT_STAR] == (expected,)
        assert answer.values[Measurement(MeasureKind.COUNT, "income")] == (expected,)


def test_bounded_sums_clamp_and_stay_within_each_persons_rows(census: list[Row]) -> None:
    lo, hi = 1000.0, 30000.0
    cols = tuple(
        dataclasses.replace(c, lower=lo, upper=hi) if c.name == "income" else c for c in PUMS_COLUMNS
    )
    by_person: dict[int, list[float]] = defaultdict(list)
    for r in census:
        by_person[r["pid"]].append(clamp(r["income"], lo, hi))
    # Without bounding (k >= anyone's rows): exactly the clamped sum.
    k_max = max(len(v) for v in by_person.values())
    cfg = dataclasses.replace(pums(k_max, cols), on_violation="clamp")
    eng, _ = engine_for(cfg)
    q = query(total("income"), total("age", "sa"), ds="pums")
    answer = run(eng, cfg, q)
    (income,) = answer.values[Measurement(MeasureKind.SUM, "income")]
    assert income == pytest.approx(sum(map(sum, by_person.values())))
    assert answer.values[Measurement(MeasureKind.SUM, "age")] == (sum(r["age"] for r in census),)
    assert isinstance(answer.values[Measurement(MeasureKind.SUM, "age")][0], int)
    # k = 1: each person contributes one of their own clamped values.
    cfg1 = dataclasses.replace(pums(1, cols), on_violation="clamp")
    s = run(engine_for(cfg1)[0], cfg1, q).values[Measurement(MeasureKind.SUM, "income")][0]
    assert sum(min(v) for v in by_person.values()) <= s <= sum(max(v) for v in by_person.values())
    assert lo * len(by_person) <= s <= hi * len(by_person)


def test_bounding_window_is_the_identity_when_not_needed(census: list[Row]) -> None:
    """The engine bounds even when nobody has more than k rows (whether anybody has must not pick
    the statement, issue 10); the window then changes nothing."""
    k_max = max(Counter(r["pid"] for r in census).values())
    cfg = pums(k_max)
    con = duckdb.connect()
    loaded = load_dataset(cfg, con)
    assert loaded.report.persons_over_limit == 0
    q = query(
        count(),
        total("income"),
        count("educ", "ne"),
        group_by=("sex", "married"),
        ds="pums",
        where=Between("age", 30, 60),
    )
    unbounded = render(q, cfg.schema, False, loaded.relation)
    bounded = render(q, cfg.schema, True, loaded.relation)
    assert "row_number" not in unbounded.sql and "row_number" in bounded.sql
    plain = sorted(con.execute(unbounded.sql, list(unbounded.params)).fetchall(), key=repr)
    windowed = sorted(con.execute(bounded.sql, list(bounded.params)).fetchall(), key=repr)
    assert len(plain) == len(windowed)
    for a, b in zip(plain, windowed, strict=True):
        assert a == pytest.approx(b)
    engine = Engine(con, {"pums": loaded}).execute(q, cfg.schema)
    assert engine.values[COUNT_STAR] is not None


def test_grouped_bounded_counts(census: list[Row]) -> None:
    eng, cfg = _pums_engine(1)
    q = query(count(), group_by=("race",), ds="pums")
    answer = run(eng, cfg, q)
    counts = dict(zip(answer.groups, answer.values[COUNT_STAR], strict=True))
    races: dict[int, set[int]] = defaultdict(set)
    for r in census:
        races[r["pid"]].add(r["race"])
    assert sum(counts.values()) == len(races)
    for (race,), n in counts.items():
        only = sum(1 for s in races.values() if s == {race})
        some = sum(1 for s in races.values() if race in s)
        assert only <= n <= some
    assert counts[(7,)] == counts[(8,)] == 0  # declared but absent: still released


def test_selection_is_per_person_and_order_independent(tmp_path: Path, census: list[Row]) -> None:
    """Which rows a person keeps depends only on that person's rows: shuffling the file changes
    nothing, and removing one person changes the answer by exactly that person's contribution."""
    header = ["age", "sex", "educ", "race", "income", "married", "pid"]

    def csv_of(rows: list[Row], name: str) -> Path:
        return write_csv(tmp_path / name, header, [[int(r[h]) for h in header] for r in rows])

    shuffled = list(census)
    random.Random(3).shuffle(shuffled)
    victim = next(pid for pid, n in Counter(r["pid"] for r in census).items() if n >= 3)
    without = [r for r in census if r["pid"] != victim]
    q = query(count(), total("income"), total("age", "sa"), group_by=("sex",), ds="pums")
    answers = []
    for path in (csv_of(census, "a.csv"), csv_of(shuffled, "b.csv"), csv_of(without, "c.csv")):
        cfg = pums(2, path=path)
        answers.append(run(engine_for(cfg)[0], cfg, q))
    full, shuf, less = answers
    assert full == shuf
    income = Measurement(MeasureKind.SUM, "income")
    diff_count = [a - b for a, b in zip(full.values[COUNT_STAR], less.values[COUNT_STAR], strict=True)]
    assert sum(diff_count) == 2  # k = 2 of the victim's rows, nobody else's
    victim_incomes = [r["income"] for r in census if r["pid"] == victim]
    diff_income = sum(full.values[income]) - sum(less.values[income])
    pairs = {a + b for i, a in enumerate(victim_incomes) for b in victim_incomes[i + 1 :]}
    assert any(diff_income == pytest.approx(p) for p in pairs)


def test_concurrent_executions_agree() -> None:
    eng, cfg = _pums_engine(2)
    queries = [
        query(count(), total("income"), group_by=("educ",), ds="pums"),
        query(count("age", "na"), where=Comparison("married", ComparisonOp.EQ, True), ds="pums"),
    ]
    expected = [run(eng, cfg, q) for q in queries]
    results: list[bool] = []

    def worker(i: int) -> None:
        for _ in range(5):
            results.append(eng.execute(queries[i % 2], cfg.schema) == expected[i % 2])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and all(results)


# ---- file changes ---------------------------------------------------------------------------------

CHANGE_COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER),
    ColumnSpec("v", ColumnType.INTEGER, 0, 10),
)


def _bump(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_changed_file_is_checked_again(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"d.{fmt}"

    def write(pids: list[int], values: list[int]) -> None:
        if fmt == "parquet":
            write_parquet(path, {"pid": pids, "v": values})
        else:
            write_csv(path, ["pid", "v"], [[p, v] for p, v in zip(pids, values, strict=True)])
        _bump(path)

    write([1, 2, 3], [1, 2, 3])
    cfg = dataset(path, CHANGE_COLUMNS)
    eng, loaded = engine_for(cfg)
    assert loaded["d"].report.persons_over_limit == 0
    q = query(count(), total("v"))
    assert run(eng, cfg, q).values[COUNT_STAR] == (3,)

    # Person 1 now has three rows: the re-checked file is bounded (as every file is).
    write([1, 1, 1, 2], [5, 5, 5, 1])
    answer = run(eng, cfg, q)
    assert answer.values[COUNT_STAR] == (2,)
    assert answer.values[Measurement(MeasureKind.SUM, "v")] == (6,)
    assert eng.dataset("d").report.persons_over_limit == 1

    # A change that breaks the declared bounds (reject): the dataset is unavailable, quietly.
    write([1, 2], [5, 99])
    for _ in range(2):
        with pytest.raises(Unavailable) as info:
            eng.execute(q, cfg.schema)
        assert "99" not in info.value.message and "failed the node's checks" in info.value.message

    # Fixed again: served again, with the fresh contents.
    write([7, 8, 9, 10], [1, 1, 1, 1])
    answer = run(eng, cfg, q)
    assert answer.values[COUNT_STAR] == (4,) and eng.dataset("d").report.persons_over_limit == 0


def test_deleted_file_is_unavailable(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d.parquet", {"pid": [1], "v": [1]})
    cfg = dataset(path, CHANGE_COLUMNS)
    eng, _ = engine_for(cfg)
    path.unlink()
    with pytest.raises(Unavailable, match="not available"):
        eng.execute(query(count()), cfg.schema)


def test_null_person_ids_are_dropped_in_clamp_mode(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d.parquet", {"pid": [1, None, None, 2], "v": [1, 50, 3, -4]})
    cfg = dataset(path, CHANGE_COLUMNS, on_violation="clamp", k=5)
    eng, loaded = engine_for(cfg)
    assert loaded["d"].report.null_units == 2
    answer = run(eng, cfg, query(count(), total("v")))
    assert answer.values[COUNT_STAR] == (2,)
    assert answer.values[Measurement(MeasureKind.SUM, "v")] == (1 + 0,)  # -4 clamps to 0
