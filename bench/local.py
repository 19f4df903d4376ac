"""Suite "local": a node answering DP queries in-process, against plain DuckDB on the same file.

For each size in ``cfg.sizes`` and each task of :data:`bench.data.QUERIES`:

* ``accord``: the node's own answer path, :meth:`accord.node.service.NodeService.answer` (verify
  the analyst's signature, parse and validate the SQL, run it on the node's DuckDB with clamping
  and, when needed, per-person bounding, add OpenDP noise, assemble, serialize and record the
  release), with a fresh query id on every call so no answer comes from the node's state;
* ``duckdb``: the plain aggregate (:func:`bench.data.plain_sql`) on a fresh ``duckdb.connect()``
  reading the same Parquet file. This is the limit: no checks, no clamping, no noise.

The two are measured in the same process with interleaved repetitions (``accord``, ``duckdb``,
``accord``, ...), so a noisy neighbour slows both. Tasks ``<task>_bounded`` run on the multi-row
variant with ``max_rows_per_person = 3`` (persons have up to 5 rows, so the node must bound each
person's contribution); the ``duckdb`` row of the same task is the plain aggregate on that file,
without bounding. Accord rows carry ``extra["ratio_vs_duckdb"]`` (median over median) and the
target the issue sets (1.3 without bounding, 3 with).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb

from accord.node.config import load_node_config
from accord.node.server import build_service
from accord.node.servicer import serialize_release
from accord.policies.identity import Identity
from accord.policies.signing import SignedQuery
from bench.common import BenchConfig, Row, median, p95
from bench.data import AGREEMENT, COORDINATOR, QUERIES, analyst_signer, ensure_dataset, node_config, plain_sql

SUITE = "local"
NOTES = {
    "count": "no scan on either side: the node's load-time counts vs DuckDB's Parquet footer",
}
EPSILON = "1"
BOUNDED_K = 3
TARGET = {False: 1.3, True: 3.0}


def accord_answerer(config: Path) -> Callable[[str], bytes]:
    """Start a node in-process from ``config`` (load and check its datasets) and return a function
    answering one SQL query through the node's full answer path (signature check included), with a
    fresh query id each time; the analyst signs outside the function, as in a federation."""
    node = load_node_config(config)
    service = build_service(node)
    caller = Identity("coordinator", COORDINATOR)
    analyst = analyst_signer(node.tls_ca.parent)
    signed: dict[str, list[SignedQuery]] = {}

    def answer(sql: str) -> bytes:
        batch = signed.setdefault(sql, [])
        if not batch:  # sign ahead, untimed: signing is the analyst's work, not the node's
            batch.extend(analyst.sign(str(uuid.uuid4()), sql, EPSILON, AGREEMENT) for _ in range(64))
        return service.answer(caller, batch.pop(), serialize_release)

    return answer


def _interleaved(fns: list[Callable[[], object]], reps: int, warmup: int) -> list[list[float]]:
    """Wall-clock seconds of ``reps`` calls of each function, taking turns (after ``warmup``
    unmeasured rounds), so that both systems see the same machine conditions."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for i in range(reps):
        order = range(len(fns)) if i % 2 == 0 else reversed(range(len(fns)))
        for j in order:
            t0 = time.perf_counter()
            fns[j]()
            out[j].append(time.perf_counter() - t0)
    return out


def measure(cfg: BenchConfig, rows: int, bounded: bool, reps: int | None = None) -> list[Row]:
    """Both systems on every task, on the one-row-per-person file or (``bounded``) the multi-row
    file with ``max_rows_per_person = 3``; ``reps`` overrides ``cfg.reps``."""
    data = ensure_dataset(cfg, rows, multi=bounded)
    config = node_config(data, max_rows_per_person=BOUNDED_K if bounded else 1)
    answer = accord_answerer(config)
    con = duckdb.connect()
    suffix = "_bounded" if bounded else ""
    out: list[Row] = []
    try:
        for task, sql in QUERIES.items():
            plain = plain_sql(task, data)

            def ours(sql: str = sql) -> object:
                return answer(sql)

            def duck(plain: str = plain) -> object:
                return con.execute(plain).fetchall()

            accord_s, duck_s = _interleaved([ours, duck], reps or cfg.reps, cfg.warmup)
            ratio = median(accord_s) / median(duck_s)
            note = "plain aggregate on the multi-row file, no bounding" if bounded else ""
            out.append(
                Row(
                    SUITE,
                    "duckdb",
                    task + suffix,
                    rows,
                    median_s=median(duck_s),
                    p95_s=p95(duck_s),
                    note=note,
                )
            )
            out.append(
                Row(
                    SUITE,
                    "accord",
                    task + suffix,
                    rows,
                    epsilon=float(EPSILON),
                    median_s=median(accord_s),
                    p95_s=p95(accord_s),
                    note=NOTES.get(task, ""),
                    extra={
                        "ratio_vs_duckdb": round(ratio, 3),
                        "target_ratio": TARGET[bounded],
                        "met": ratio <= TARGET[bounded],
                        "max_rows_per_person": BOUNDED_K if bounded else 1,
                    },
                )
            )
            print(
                f"   local {task + suffix:<24} {rows:>11,} rows  accord {median(accord_s) * 1e3:8.2f} ms  "
                f"duckdb {median(duck_s) * 1e3:8.2f} ms  ratio {ratio:5.2f} (target ≤ {TARGET[bounded]})",
                flush=True,
            )
    finally:
        con.close()
    return out


def run(cfg: BenchConfig) -> list[Row]:
    out: list[Row] = []
    for rows in cfg.sizes:
        for bounded in (False, True):
            out.extend(measure(cfg, rows, bounded))
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run only the local suite and print the ratios.")
    parser.add_argument("--quick", action="store_true", help="the quick sizes")
    parser.add_argument("--rows", type=int, action="append", help="a size to run (repeatable)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: the config's)")
    parser.add_argument("--only", choices=("plain", "bounded"), default=None, help="one variant only")
    args = parser.parse_args()
    base = BenchConfig(quick=args.quick)
    variants = [v for v in (False, True) if args.only is None or (args.only == "bounded") == v]
    for n in args.rows or base.sizes:
        for bounded in variants:
            measure(base, n, bounded, args.reps)
