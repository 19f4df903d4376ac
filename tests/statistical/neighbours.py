"""Worst-case neighbouring datasets, answered by the real node: SQL front end, DuckDB engine, release.

Each :class:`Neighbours` is a query plus two datasets D and D' written as real files. Accord's
neighbour relation is add/remove one person (``distance = 1``); moving a person between groups is
a substitution, two add/remove steps (``distance = 2``), so the node promises ``2 * epsilon``
for it (group privacy).

:func:`prepare` compiles the SQL with :func:`accord.query.sql.compile_query`, loads both files with
:func:`accord.node.duckdb.catalog.load_dataset` and computes the exact answers once with
:class:`accord.node.duckdb.engine.Engine` (WHERE, per-person bounding, clamping, grouping: the
code that runs in production). :meth:`Prepared.sampler` then draws releases from
:func:`node.release.build_release`, the function the node's service calls to turn exact answers
into a release (budget split, sensitivity, calibration against OpenDP's privacy map, OpenDP's
vector Laplace, means by post-processing). To draw ``n`` releases in one call the exact group
vector is repeated ``n`` times: ``build_release`` noises each measurement's whole vector with one
call of the cached OpenDP mechanism, so each copy gets fresh, independent noise at the scale the
node computed, exactly as ``n`` separate queries would.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from accord.node.backend import ExactAnswer
from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.engine import Engine
from accord.node.plan import Measurement, distinct_measurements, measurements_for
from accord.node.release import build_release
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, Literal, Query
from accord.query.release import Release
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.query.sql import compile_query
from tests.statistical.audit import Sampler
from tests.unit.nodedata import PUMS_COLUMNS, PUMS_DUP, dataset, pums_rows, write_csv, write_parquet

Row = dict[str, Any]

SYNTHETIC_COLUMNS = (
    ColumnSpec("pid", ColumnType.STRING),
    ColumnSpec("x", ColumnType.INTEGER, -20, 10),
    ColumnSpec("g", ColumnType.STRING, categories=("a", "b")),
)
PUMS_HEADER = ["age", "sex", "educ", "race", "income", "married", "pid"]
NEW_PID = 900_001  # not a pid of the census sample


def census_person(**values: Any) -> Row:
    """A row of one extra person of the census sample (pid NEW_PID unless given)."""
    row: Row = {
        "age": 40,
        "sex": 0,
        "educ": 9,
        "race": 1,
        "income": 20000.0,
        "married": False,
        "pid": NEW_PID,
    }
    row.update(values)
    return row


def synthetic_people() -> list[Row]:
    """Fifty persons with one to three rows each, values spread over and beyond [-20, 10]."""
    rows = []
    for p in range(50):
        for r in range(1 + p % 3):
            rows.append({"pid": f"p{p}", "x": (p * 7 + r * 13) % 41 - 25, "g": "ab"[(p + r) % 2]})
    return rows


@dataclass(frozen=True)
class Neighbours:
    """A query and two neighbouring datasets. ``rows_d=None`` means the shared census file itself."""

    name: str
    sql: str
    epsilon: Fraction
    rows_d: list[Row] | None
    rows_d2: list[Row]
    census: bool = True
    k: int = 2
    distance: int = 1
    columns: tuple[ColumnSpec, ...] = field(default=PUMS_COLUMNS)

    @property
    def claimed(self) -> float:
        """The epsilon the node promises between D and D': ``distance * epsilon``."""
        return float(self.distance * self.epsilon)


def _census_plus(*extra: Row) -> list[Row]:
    return [*pums_rows(), *extra]


SCENARIOS: tuple[Neighbours, ...] = (
    Neighbours(
        "count: 0 vs 1",
        "SELECT COUNT(*) AS n FROM d",
        Fraction(1),
        rows_d=[],
        rows_d2=[{"pid": "only", "x": 3, "g": "a"}],
        census=False,
        k=1,
        columns=SYNTHETIC_COLUMNS,
    ),
    Neighbours(
        "filtered count: a person with more rows than allowed",
        "SELECT COUNT(*) AS n FROM d WHERE age >= 18",
        Fraction(1),
        rows_d=None,
        rows_d2=_census_plus(*(census_person(age=a) for a in (30, 45, 61, 12))),
    ),
    Neighbours(
        "group-by count: a person in two groups",
        "SELECT sex, COUNT(*) AS n FROM d GROUP BY sex",
        Fraction(1),
        rows_d=None,
        rows_d2=_census_plus(census_person(sex=0), census_person(sex=1)),
    ),
    Neighbours(
        "group-by count: a person moving between groups (substitution)",
        "SELECT sex, COUNT(*) AS n FROM d GROUP BY sex",
        Fraction(1, 2),
        rows_d=_census_plus(census_person(sex=0, age=30), census_person(sex=0, age=31)),
        rows_d2=_census_plus(census_person(sex=1, age=30), census_person(sex=1, age=31)),
        distance=2,
    ),
    Neighbours(
        "integer sum: a person beyond the negative bound",
        "SELECT SUM(x) AS s FROM d",
        Fraction(1),
        rows_d=synthetic_people(),
        rows_d2=[
            *synthetic_people(),
            *({"pid": "edge", "x": x, "g": "a"} for x in (-1000, -25, -1000)),
        ],
        census=False,
        columns=SYNTHETIC_COLUMNS,
    ),
    Neighbours(
        "float sum: a person at the upper bound",
        "SELECT SUM(income) AS s FROM d",
        Fraction(1),
        rows_d=None,
        rows_d2=_census_plus(*(census_person(income=500000.0, age=a) for a in (20, 30, 40))),
    ),
    Neighbours(
        "mean: a person at the upper bound with more rows than allowed",
        "SELECT AVG(age) AS m FROM d",
        Fraction(1),
        rows_d=None,
        rows_d2=_census_plus(*(census_person(age=100, educ=e) for e in (1, 2, 3))),
    ),
)
SCENARIO_IDS = [
    s.name.split(":")[0].replace(" ", "-") + ("-move" if s.distance > 1 else "") for s in SCENARIOS
]


@dataclass(frozen=True)
class _Tiled:
    """``ExactValues`` repeating one exact answer ``n`` times (see the module docstring)."""

    groups: tuple[tuple[Literal, ...], ...]
    values: Mapping[Measurement, Sequence[int | float]]


@dataclass(frozen=True)
class Prepared:
    """A scenario's query, schema and exact answers on D and D', ready to sample releases from."""

    scenario: Neighbours
    query: Query
    schema: DatasetSchema
    exact_d: ExactAnswer
    exact_d2: ExactAnswer

    def exact_vector(self, exact: ExactAnswer) -> list[float]:
        """The exact counterpart of a release row-major over groups: per aggregate its value, or for
        AVG the (sum, count) pair it releases."""
        out: list[float] = []
        for i in range(len(exact.groups)):
            for agg, parts in zip(self.query.aggregates, measurements_for(self.query), strict=True):
                vals = [float(exact.values[m][i]) for m in parts]
                out.extend(vals if agg.function is AggregateFunction.AVG else vals[:1])
        return out

    def l1_change(self, m: Measurement) -> float:
        """The exact L1 change of measurement ``m``'s group vector between D and D'."""
        a, b = self.exact_d.values[m], self.exact_d2.values[m]
        return float(sum(abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)))

    def measurements(self) -> tuple[Measurement, ...]:
        return distinct_measurements(self.query)

    def release(self, exact: ExactAnswer, epsilon: Fraction, n: int) -> Release:
        """One call of the node's :func:`~node.release.build_release` noising ``n`` copies of
        ``exact`` (rows ``i * len(groups)`` to ``(i + 1) * len(groups) - 1`` are the i-th release)."""
        tiled = _Tiled(exact.groups * n, {m: tuple(v) * n for m, v in exact.values.items()})
        return build_release(self.query, self.schema, tiled, Epsilon(epsilon), "audit", "node", 0.0)

    def sampler(self, exact: ExactAnswer, epsilon: Fraction) -> Sampler:
        """``n`` releases of the query at ``epsilon`` from the node's release path, as rows of the
        released numbers (per group and aggregate: the value, or for AVG the noisy sum and count it
        releases)."""

        def draw(n: int) -> NDArray[np.float64]:
            out: list[float] = []
            for row in self.release(exact, epsilon, n).rows:
                for cell in row.cells:
                    if cell.sum is not None and cell.count is not None:
                        out.append(cell.sum.value)
                        out.append(cell.count.value)
                    else:
                        out.append(cell.estimate.value)
            return np.asarray(out, dtype=np.float64).reshape(n, -1)

        return draw


def _write(rows: list[Row], path: Path, census: bool) -> Path:
    if census:
        return write_csv(path, PUMS_HEADER, [[r[h] for h in PUMS_HEADER] for r in rows])
    columns = {c: [r[c] for r in rows] for c in ("pid", "x", "g")}
    return write_parquet(path, columns, {"pid": pa.string(), "x": pa.int64(), "g": pa.string()})


def _exact(scenario: Neighbours, path: Path, sql: str) -> tuple[Query, DatasetSchema, ExactAnswer]:
    cfg = dataset(path, scenario.columns, name="d", k=scenario.k, on_violation="clamp")
    con = duckdb.connect()
    try:
        engine = Engine(con, {"d": load_dataset(cfg, con)})
        query = compile_query(sql, {"d": cfg.schema})
        return query, cfg.schema, engine.execute(query, cfg.schema)
    finally:
        con.close()


def prepare(scenario: Neighbours, folder: Path) -> Prepared:
    """Write D and D' under ``folder`` and compute both exact answers with the node's engine."""
    suffix = ".csv" if scenario.census else ".parquet"
    if scenario.rows_d is None:
        path_d = Path(shutil.copy(PUMS_DUP, folder / f"d{suffix}"))
    else:
        path_d = _write(scenario.rows_d, folder / f"d{suffix}", scenario.census)
    path_d2 = _write(scenario.rows_d2, folder / f"d2{suffix}", scenario.census)
    query, schema, exact_d = _exact(scenario, path_d, scenario.sql)
    _, _, exact_d2 = _exact(scenario, path_d2, scenario.sql)
    return Prepared(scenario, query, schema, exact_d, exact_d2)
