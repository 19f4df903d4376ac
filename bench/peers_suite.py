"""Suite "peers" (rows of suite "local"): the same node-local DP queries in other DP systems.

For each size in ``cfg.sizes`` and each task of :data:`bench.data.QUERIES`, on the same Parquet
file (:func:`bench.data.ensure_dataset`, one row per person) and at epsilon 1:

* ``opendp-polars``: OpenDP 0.16's Polars context (``bench/peers/opendp_polars_worker.py``);
* ``smartnoise-sql``: SmartNoise SQL 1.0 over pandas (``smartnoise_worker.py``);
* ``pyqrlew``: pyqrlew's DP rewriting of the SQL, executed on DuckDB (``pyqrlew_worker.py``).

Each peer runs in its own venv (``bench/peers/venvs.py``: their pins conflict with Accord's and
with each other's), as a subprocess that never imports Accord. ``median_s``/``p95_s`` are **end to
end from the file**: every repetition opens the file, builds the DP query and releases it, as
Accord's rows in suite ``local`` do (the node reads the Parquet file at query time).
``extra["once_loaded_s"]`` is the median with the data already in the peer's memory.

Repetitions are ``cfg.reps`` after ``cfg.warmup``, except where a peer is too slow for that
(:data:`CAPS`, written into the row's note): SmartNoise copies the whole table into SQLite on every
end-to-end release (15-25 s per million rows here).

A peer that cannot be installed, a query it cannot express, or a worker that fails or times out
still yields a row, with ``median_s`` None and a note saying why: nothing is dropped silently.

    python -m bench.peers_suite --quick
    python -m bench.peers_suite --sizes 1000000 --systems opendp-polars,pyqrlew --tasks count,sum
"""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accord.errors import AccordError
from accord.node.config import load_node_config
from accord.query.model import Aggregate, And, Comparison, ComparisonOp, Query
from accord.query.schema import DatasetSchema
from accord.query.sql import compile_query
from bench.common import BenchConfig, Row, median, p95
from bench.data import DATASET, QUERIES, ensure_dataset, node_config
from bench.peers.venvs import PEERS, ensure_venv

SUITE = "local"
EPSILON = 1.0
WORKERS = {
    "opendp-polars": "opendp_polars_worker.py",
    "smartnoise-sql": "smartnoise_worker.py",
    "pyqrlew": "pyqrlew_worker.py",
}
WORKER_TIMEOUT_S = 3 * 3600
LARGE = 5_000_000
LOADED_REPS_LARGE = 3
"""From ``LARGE`` rows on, the once-loaded time (secondary: the target is end to end) is a median
of at most this many releases: OpenDP's in-memory releases take ~15 s each at 10M rows here."""


@dataclass(frozen=True)
class Cap:
    """At ``min_rows`` rows or more, at most ``reps`` end-to-end repetitions after ``warmup``."""

    min_rows: int
    warmup: int
    reps: int
    why: str


CAPS: dict[str, tuple[Cap, ...]] = {
    # Most specific (largest min_rows) first.
    "smartnoise-sql": (
        Cap(
            5_000_000, 0, 2, "SmartNoise copies the table into SQLite on every release (minutes at 10M rows)"
        ),
        Cap(500_000, 0, 3, "SmartNoise copies the table into SQLite on every release (15-25 s at 1M rows)"),
    ),
    "pyqrlew": (Cap(5_000_000, 1, 3, "pyqrlew takes tens of seconds per release at 10M rows"),),
}


def plan(system: str, rows: int, cfg: BenchConfig) -> tuple[int, int, str]:
    """(warmup, reps, note) for ``system`` at ``rows``: the config's, or the most specific cap's
    when that is lower (the note then says so and why). Quick mode only checks that each peer runs:
    one repetition, no warm-up (a SmartNoise start alone takes seconds)."""
    if cfg.quick:
        return 0, 1, "quick mode: 1 rep, no warm-up"
    cap = next((c for c in CAPS.get(system, ()) if rows >= c.min_rows), None)
    if cap is None or (cap.reps >= cfg.reps and cap.warmup >= cfg.warmup):
        return cfg.warmup, cfg.reps, ""
    warmup, reps = min(cap.warmup, cfg.warmup), min(cap.reps, cfg.reps)
    return warmup, reps, f"capped at {reps} rep(s) after {warmup} warm-up: {cap.why}"


# ---- the query spec the workers receive --------------------------------------------------------


class Inexpressible(Exception):
    """The query is outside what the spec (and so the workers) can carry."""


def _column_spec(schema: DatasetSchema) -> dict[str, Any]:
    return {
        c.name: {
            "type": c.type.value,
            "lower": c.lower,
            "upper": c.upper,
            "categories": None if c.categories is None else list(c.categories),
        }
        for c in schema.columns
    }


def _where(query: Query) -> list[list[Any]]:
    pred = query.where
    if pred is None:
        return []
    parts = pred.operands if isinstance(pred, And) else (pred,)
    out: list[list[Any]] = []
    for p in parts:
        if not isinstance(p, Comparison):
            raise Inexpressible(f"filter {type(p).__name__} is not a plain comparison")
        op = "!=" if p.op is ComparisonOp.NE else p.op.value
        out.append([p.column, op, p.value])
    return out


def spec(task: str, schema: DatasetSchema) -> dict[str, Any]:
    """What a worker needs to run ``task``: Accord's SQL, parsed by Accord's own parser into the
    aggregate, its column, the group and its public keys, the filter, and the public schema."""
    sql = QUERIES[task]
    query = compile_query(sql, {schema.name: schema})
    aggs = query.aggregates
    if len(aggs) != 1 or len(query.group_by) > 1:
        raise Inexpressible("the workers take one aggregate and at most one GROUP BY column")
    agg: Aggregate = aggs[0]
    group = query.group_by[0] if query.group_by else None
    keys = None
    if group is not None:
        col = schema.column(group)
        assert col is not None and col.categories is not None, "validated by compile_query"
        keys = list(col.categories)
    return {
        "task": task,
        "sql": sql,
        "table": query.dataset,
        "agg": {"COUNT": "count", "SUM": "sum", "AVG": "mean"}[agg.function.value],
        "column": agg.column,
        "group_by": group,
        "keys": keys,
        "where": _where(query),
        "columns": _column_spec(schema),
        "privacy_unit": schema.privacy_unit,
        "max_rows_per_person": schema.max_rows_per_person,
    }


def schema_of(data: Path) -> DatasetSchema:
    config = load_node_config(node_config(data))
    dataset = config.dataset(DATASET)
    assert dataset is not None
    return dataset.schema


# ---- running a worker --------------------------------------------------------------------------


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def run_worker(
    python: Path,
    system: str,
    data: Path,
    task: str,
    query_spec: dict[str, Any],
    epsilon: float,
    reps: int,
    *,
    warmup: int = 1,
    loaded_reps: int | None = None,
    mode: str = "timing",
    releases: int | None = None,
    timeout: float = WORKER_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``system``'s worker and return its JSON; ``{"error": ...}`` when it fails."""
    cmd = [
        str(python),
        str(PEERS / WORKERS[system]),
        str(data),
        task,
        json.dumps(query_spec),
        repr(epsilon),
        str(reps),
        "--warmup",
        str(warmup),
        "--mode",
        mode,
    ]
    if loaded_reps is not None:
        cmd += ["--loaded-reps", str(loaded_reps)]
    if releases is not None:
        cmd += ["--releases", str(releases)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"{system} worker timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": f"{system} worker failed ({proc.returncode}): {_tail(proc.stderr)}"}
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"{system} worker printed no result: {_tail(proc.stdout + proc.stderr)}"}
    return out


def _details(d: dict[str, Any]) -> str:
    """A short, table-friendly summary of what the peer reported about its release."""
    if "mechanisms" in d:
        return "; ".join(
            f"{m['aggregate']}: {m['distribution']} scale {m['scale']:g}" for m in d["mechanisms"]
        )
    if "query_cost_epsilon" in d:
        return f"query cost epsilon {d['query_cost_epsilon']:g}, delta {d['query_cost_delta']:.2g}"
    if "dp_event" in d:
        ev = d["dp_event"]
        events = ev.get("events", [ev])
        mult = ", ".join(f"{e.get('class_name')} x{e.get('noise_multiplier', 0):.3g}" for e in events)
        return f"{mult}, delta {d.get('delta')}"
    return ""


def measure(
    system: str, python: Path | str, data: Path, rows: int, task: str, schema: DatasetSchema, cfg: BenchConfig
) -> Row:
    row = Row(SUITE, system, task, rows, epsilon=EPSILON)
    if isinstance(python, str):
        row.note = f"not measured: {python}"
        return row
    try:
        query_spec = spec(task, schema)
    except (Inexpressible, AccordError) as err:
        row.note = f"not measured: the query cannot be handed to the peers ({err})"
        return row
    warmup, reps, cap_note = plan(system, rows, cfg)
    loaded_reps = min(reps, LOADED_REPS_LARGE) if rows >= LARGE else reps
    got = run_worker(
        python, system, data, task, query_spec, EPSILON, reps, warmup=warmup, loaded_reps=loaded_reps
    )
    notes = [*got.get("notes", []), *([cap_note] if cap_note else [])]
    if "error" in got:
        row.note = f"not measured: {got['error']}"
        return row
    if "unsupported" in got:
        row.note = "; ".join(
            [f"not measured: {system} cannot express this query: {got['unsupported']}", *notes]
        )
        return row
    times, loaded = got["end_to_end_s"], got["once_loaded_s"]
    row.median_s, row.p95_s = median(times), p95(times)
    row.extra = {
        "once_loaded_s": median(loaded) if loaded else None,
        "once_loaded_p95_s": p95(loaded) if loaded else None,
        "load_s": got.get("load_s"),
        "reps": len(times),
        "once_loaded_reps": len(loaded),
        "warmup": warmup,
        "version": got.get("version", ""),
        "release": _details(got.get("details", {})),
    }
    row.note = "; ".join(notes)
    return row


def run(
    cfg: BenchConfig,
    systems: tuple[str, ...] = tuple(WORKERS),
    tasks: tuple[str, ...] | None = None,
    sizes: tuple[int, ...] | None = None,
) -> list[Row]:
    tasks = tuple(QUERIES) if tasks is None else tasks
    pythons = {s: ensure_venv(s) for s in systems}
    for s, p in pythons.items():
        if isinstance(p, str):
            print(f"   {s}: skipped: {p}", flush=True)
    rows: list[Row] = []
    for n in sizes or cfg.sizes:
        data = ensure_dataset(cfg, n, multi=False)
        schema = schema_of(data)
        for system in systems:
            for task in tasks:
                row = measure(system, pythons[system], data, n, task, schema, cfg)
                print("  ", _line(row), flush=True)
                rows.append(row)
    return rows


def _line(r: Row) -> str:
    t = "-" if r.median_s is None else f"{r.median_s:.3f} s"
    loaded = r.extra.get("once_loaded_s")
    lt = "" if loaded is None else f" (once loaded {loaded:.3f} s)"
    return f"{r.system:15} {r.task:15} {r.rows:>11,} {t}{lt}  {r.note[:160]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--systems", default=",".join(WORKERS))
    p.add_argument("--tasks", default=",".join(QUERIES))
    p.add_argument("--sizes", default="", help="comma-separated row counts (default: the config's)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    cfg = BenchConfig(quick=a.quick)
    sizes = tuple(int(s) for s in a.sizes.split(",") if s) or None
    got = run(cfg, tuple(a.systems.split(",")), tuple(a.tasks.split(",")), sizes)
    for r in got:
        print(json.dumps(asdict(r)))
    if a.json:
        from bench.common import write_json

        write_json(got, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
