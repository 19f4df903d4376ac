"""Suite "accuracy": Accord's measured error against its stated noise scale, and against OpenDP.

For ``count``, ``sum`` and ``mean`` of :data:`bench.data.QUERIES` at epsilon 0.1, 0.5 and 1, on a
fixed one-row-per-person file (:data:`ROWS` rows):

* **Accord**: the node's own DP path. The node config is loaded and checked as a node does
  (``load_node_config``, ``load_datasets``), the query compiled by the node's parser, its exact
  values computed once by the node's engine (they are deterministic), then
  :func:`node.release.build_release` (the function ``NodeService.answer`` calls: epsilon split,
  calibration against OpenDP's privacy map, OpenDP's samplers, the mean as post-processing) is run
  ``releases`` times. The error is the mean absolute difference from the exact answer.
* **Prediction from the stated scale**: each release states its noise scale ``b``. Counts and
  integer sums carry discrete Laplace noise, ``P(k) ∝ exp(-|k|/b)``, whose exact mean absolute
  value is ``2p / (1 - p²)`` with ``p = exp(-1/b)`` (→ ``b`` for large ``b``). A mean is
  ``(S + X) / (C + Y)`` with ``X``, ``Y`` the sum's and the count's noises; to first order its error
  is ``X/C - (S/C²)·Y``, a sum of two independent Laplace variables with scales
  ``a = b_sum/C`` and ``c = (S/C²)·b_count``, whose mean absolute value is ``(a² + ac + c²)/(a + c)``.
* **OpenDP**: the same query on the same file at the same epsilon through OpenDP's Polars context
  (the ``opendp-polars`` peer worker, in its own venv), released as many times; its error is
  computed against the same exact answer.

Rows: ``system="accord"``, ``error`` = measured MAE, ``extra`` = ``predicted``,
``ratio_to_prediction``, ``ratio_se`` (standard error of that ratio from the finite number of
releases), ``opendp_error``, ``ratio_to_opendp`` and its standard error ``ratio_to_opendp_se``
(two finite averages of equal mechanisms differ by a few percent: ``ratio_to_opendp`` up to
1 + 2 x its standard error is no evidence of a worse mechanism), the noise scales. One
``opendp-polars`` row per (task, epsilon) carries OpenDP's own error and its stated scales' prediction.

    python -m bench.accuracy --quick
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb

from accord.node.backend import ExactAnswer
from accord.node.config import load_node_config
from accord.node.duckdb.catalog import load_datasets
from accord.node.duckdb.engine import Engine
from accord.node.plan import distinct_measurements
from accord.node.release import build_release
from accord.query.epsilon import Epsilon
from accord.query.model import Query
from accord.query.release import Cell, Mechanism
from accord.query.schema import DatasetSchema
from accord.query.sql import compile_query
from bench.common import BenchConfig, Row
from bench.data import DATASET, QUERIES, ensure_dataset, node_config
from bench.peers.venvs import ensure_venv
from bench.peers_suite import run_worker, spec

SUITE = "accuracy"
TASKS = ("count", "sum", "mean")
EPSILONS = (0.1, 0.5, 1.0)
ROWS = 20_000
"""The fixed dataset (the error of counts and sums does not depend on its size; a mean's does)."""


def releases(cfg: BenchConfig) -> int:
    return 200 if cfg.quick else 3000


# ---- predictions -------------------------------------------------------------------------------


def discrete_laplace_mae(scale: float) -> float:
    """E|K| for ``P(K = k) ∝ exp(-|k| / scale)``: ``2p / (1 - p²)`` with ``p = exp(-1/scale)``."""
    if scale == 0:
        return 0.0
    p = math.exp(-1.0 / scale)
    return 2 * p / -math.expm1(-2.0 / scale)


def noise_mae(mechanism: str, scale: float) -> float:
    """Mean absolute value of one noise draw: exact for discrete Laplace, ``scale`` for Laplace."""
    return discrete_laplace_mae(scale) if mechanism == "discrete" else scale


def laplace_sum_mae(a: float, c: float) -> float:
    """E|A + C| for independent Laplace variables with scales ``a`` and ``c``."""
    if a + c == 0:
        return 0.0
    return (a * a + a * c + c * c) / (a + c)


def mean_prediction(total: float, count: float, sum_scale: float, count_scale: float) -> float:
    """First-order mean absolute error of ``(S + X) / (C + Y)`` around ``S / C`` (see the module
    docstring); accurate while the count's noise is small against the count."""
    return laplace_sum_mae(sum_scale / count, abs(total) / count**2 * count_scale)


# ---- Accord ------------------------------------------------------------------------------------


class AccordNode:
    """The node's DP path on one dataset: config, checks and engine exactly as the node builds them."""

    def __init__(self, config: Path) -> None:
        node = load_node_config(config)
        self.con = duckdb.connect(":memory:")
        self.engine = Engine(self.con, load_datasets(node.datasets, self.con))
        self.schemas = {d.schema.name: d.schema for d in node.datasets}
        self.schema: DatasetSchema = self.schemas[DATASET]

    def compile(self, sql: str) -> Query:
        return compile_query(sql, self.schemas)

    def exact(self, query: Query) -> ExactAnswer:
        return self.engine.execute(query, self.schema)

    def release(self, query: Query, exact: ExactAnswer, epsilon: Fraction, i: int) -> Cell:
        r = build_release(query, self.schema, exact, Epsilon(epsilon), f"accuracy-{i}", "bench", 0.0)
        return r.rows[0].cells[0]


def _truth(query: Query, exact: ExactAnswer) -> tuple[float, float | None, float | None]:
    """(exact answer, exact sum, exact count): the last two only for a mean."""
    ms = distinct_measurements(query)
    vals = [float(exact.values[m][0]) for m in ms]
    if len(vals) == 2:  # AVG: (SUM, COUNT)
        return vals[0] / max(vals[1], 1.0), vals[0], vals[1]
    return vals[0], None, None


def _kind(mechanism: Mechanism) -> str:
    return "discrete" if mechanism is Mechanism.DISCRETE_LAPLACE else "continuous"


def _mae(values: list[float], truth: float) -> tuple[float, float]:
    """Mean absolute error and its standard error."""
    errs = [abs(v - truth) for v in values]
    se = statistics.stdev(errs) / math.sqrt(len(errs)) if len(errs) > 1 else math.nan
    return statistics.fmean(errs), se


def _error_stats(mae: float, se: float, predicted: float | None, n: int) -> dict[str, Any]:
    """The measured error against the prediction, with standard errors (both systems' rows)."""
    return {
        "predicted": predicted,
        "ratio_to_prediction": mae / predicted if predicted else None,
        "ratio_se": se / predicted if predicted else None,
        "mae_se": se,
        "releases": n,
    }


def accord_row(node: AccordNode, task: str, epsilon: float, n: int) -> Row:
    query = node.compile(QUERIES[task])
    exact = node.exact(query)
    truth, total, count = _truth(query, exact)
    cells = [node.release(query, exact, Fraction(str(epsilon)), i) for i in range(n)]
    first = cells[0]
    if total is not None and count is not None:
        assert first.sum is not None and first.count is not None
        predicted = mean_prediction(total, count, first.sum.noise_scale, first.count.noise_scale)
        scales = {"sum_scale": first.sum.noise_scale, "count_scale": first.count.noise_scale}
        how = "first-order propagation of the stated sum and count scales"
    else:
        est = first.estimate
        predicted = noise_mae(_kind(est.mechanism), est.noise_scale)
        scales = {"noise_scale": est.noise_scale}
        how = f"exact E|noise| of the stated {est.mechanism.value} scale"
    mae, se = _mae([c.estimate.value for c in cells], truth)
    row = Row(
        SUITE,
        "accord",
        task,
        ROWS,
        epsilon=epsilon,
        error=mae,
        extra={**_error_stats(mae, se, predicted, n), "truth": truth, **scales},
        note=f"prediction: {how}",
    )
    return row


# ---- OpenDP ------------------------------------------------------------------------------------


def _opendp_prediction(details: dict[str, Any], total: float | None, count: float | None) -> float | None:
    mechs = details.get("mechanisms") or []
    if len(mechs) == 1:
        m = mechs[0]
        kind = "discrete" if "Integer" in m["distribution"] else "continuous"
        return noise_mae(kind, float(m["scale"]))
    if len(mechs) == 2 and total is not None and count is not None:
        by = {m["aggregate"]: float(m["scale"]) for m in mechs}
        if "Sum" in by and "Length" in by:
            return mean_prediction(total, count, by["Sum"], by["Length"])
    return None


def opendp_row(
    python: Path | str,
    data: Path,
    schema: DatasetSchema,
    task: str,
    epsilon: float,
    n: int,
    truth: tuple[float, float | None, float | None],
) -> Row:
    row = Row(SUITE, "opendp-polars", task, ROWS, epsilon=epsilon)
    if isinstance(python, str):
        row.note = f"not measured: {python}"
        return row
    got = run_worker(
        python, "opendp-polars", data, task, spec(task, schema), epsilon, 0, mode="accuracy", releases=n
    )
    if "error" in got or "unsupported" in got:
        row.note = f"not measured: {got.get('error') or got.get('unsupported')}"
        return row
    values = [v[0] for v in got["values"]]
    exact, total, count = truth
    mae, se = _mae(values, exact)
    predicted = _opendp_prediction(got.get("details", {}), total, count)
    scales = "; ".join(
        f"{m['aggregate']} {m['distribution']} {m['scale']:g}" for m in got["details"]["mechanisms"]
    )
    row.error = mae
    row.extra = {**_error_stats(mae, se, predicted, n), "scales": scales}
    row.note = f"OpenDP's Polars context ({got.get('version', '')}), same file, query and epsilon"
    return row


def run(cfg: BenchConfig) -> list[Row]:
    n = releases(cfg)
    data = ensure_dataset(cfg, ROWS, multi=False)
    config = node_config(data)
    node = AccordNode(config)
    python = ensure_venv("opendp-polars")
    rows: list[Row] = []
    for task in TASKS:
        query = node.compile(QUERIES[task])
        truth = _truth(query, node.exact(query))
        for eps in EPSILONS:
            mine = accord_row(node, task, eps, n)
            theirs = opendp_row(python, data, node.schema, task, eps, n, truth)
            if theirs.error:
                mine.extra["opendp_error"] = theirs.error
                assert mine.error is not None
                ratio = mine.error / theirs.error
                mine.extra["ratio_to_opendp"] = ratio
                mine.extra["ratio_to_opendp_se"] = ratio * math.hypot(
                    mine.extra["mae_se"] / mine.error, theirs.extra["mae_se"] / theirs.error
                )
            else:
                mine.note += f"; no OpenDP comparison ({theirs.note})"
            for r in (mine, theirs):
                print(
                    f"   {r.system:14} {r.task:6} eps={eps:<4} MAE {r.error}  {_brief(r.extra)}", flush=True
                )
            rows += [mine, theirs]
    return rows


def _brief(extra: dict[str, Any]) -> str:
    keys = ("predicted", "ratio_to_prediction", "ratio_se", "opendp_error")
    return " ".join(f"{k}={extra[k]:.4g}" for k in keys if isinstance(extra.get(k), float))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    for r in run(BenchConfig(quick=a.quick)):
        print(json.dumps(asdict(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
