"""Suite "timing": what timing that depends only on public information costs (issue 10).

Two measurements, each against its reference in the same run, interleaved (reference, ours, then
the reverse order, ...) so both see the same machine:

* ``accord-public-path``: the statement the engine runs now (per-person bounding in every query,
  by load-time ranks without WHERE or the window with it; every SUM clamped, as with
  ``on_violation = "clamp"``) against the shortcuts the load-time checks used to justify on this
  file, where nobody has more than one row and every value is in bounds (no bounding, no clamp).
  Both are rendered by the node's renderer and run on the node's DuckDB relation; ``ratio`` is ours
  over the shortcut at p50. (The whole-dataset ``COUNT(*)`` is answered from the load-time counts
  either way, so it is not here.)
* ``accord-padded``: the node's answer path in one process (real signature checks, memory state)
  with the answer-time budget (``answer_seconds``, ``budget_s``) against the same node with padding
  off (``answer_seconds = 0``): p50 of each, ``ratio`` padded over unpadded, and ``overruns``, the
  answers refused because they ran past the budget (it must be 0 for the budget to be right).
  Padding costs the budget minus the work, by design: the number to watch is how much headroom
  the budget leaves (``unpadded_p50_s`` against ``budget_s``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import duckdb

from accord.errors import AnswerTimeExceeded
from accord.node.config import load_node_config
from accord.node.duckdb.catalog import load_dataset
from accord.node.duckdb.sqlrender import render
from accord.node.server import build_service
from accord.node.servicer import serialize_release
from accord.node.state import MemoryState
from accord.policies.identity import Identity
from accord.query.sql import compile_query
from bench.common import BenchConfig, Row, median, p95
from bench.data import AGREEMENT, COORDINATOR, QUERIES, analyst_signer, ensure_dataset, node_config

__all__ = ["run"]

SUITE = "timing"
PATH_TASKS = ("sum", "mean", "groupby12", "filtered_count")
PADDED_TASKS = ("count", "groupby12", "filtered_count")
EPSILON = "1"


def _rows(cfg: BenchConfig) -> int:
    return 20_000 if cfg.quick else 1_000_000


def _budget(cfg: BenchConfig) -> float:
    """The answer-time budget measured: the default (1 s) on the full run; less on small data."""
    return 0.1 if cfg.quick else 1.0


def public_path(cfg: BenchConfig) -> list[Row]:
    rows = _rows(cfg)
    data = ensure_dataset(cfg, rows, multi=False)
    config = load_node_config(node_config(data, out=cfg.work / "timing" / "path.toml"))
    dataset = config.datasets[0]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    loaded = load_dataset(dataset, con)
    schema = dataset.schema
    assert loaded.report.persons_over_limit == 0 and not loaded.report.out_of_bounds
    everything = {c.name: (c.lower, c.upper) for c in schema.columns if c.lower is not None}
    reps = 5 if cfg.quick else 15
    out = []
    for task in PATH_TASKS:
        query = compile_query(QUERIES[task], {schema.name: schema})
        variants = {
            "shortcut": render(query, schema, False, loaded.relation, everything, None),
            "public": render(query, schema, True, loaded.relation, {}, loaded.ranks),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for i in range(reps + 2):  # 2 warm-up rounds
            for name in order if i % 2 == 0 else reversed(order):
                rendered = variants[name]
                started = time.perf_counter()
                con.execute(rendered.sql, list(rendered.params)).fetchall()
                if i >= 2:
                    times[name].append(time.perf_counter() - started)
        ours, ref = median(times["public"]), median(times["shortcut"])
        out.append(
            Row(
                SUITE,
                "accord-public-path",
                task,
                rows,
                median_s=ours,
                p95_s=p95(times["public"]),
                extra={"shortcut_p50_s": ref, "ratio": ours / ref, "reps": reps},
            )
        )
    con.close()
    return out


def padding(cfg: BenchConfig) -> list[Row]:
    rows = _rows(cfg)
    budget = _budget(cfg)
    data = ensure_dataset(cfg, rows, multi=False)
    folder = cfg.work / "timing"
    services = {
        name: build_service(
            load_node_config(node_config(data, out=folder / f"{name}.toml", answer_seconds=seconds)),
            state=MemoryState(),
        )
        for name, seconds in (("unpadded", 0.0), ("padded", budget))
    }
    signer = analyst_signer(load_node_config(folder / "padded.toml").tls_ca.parent)
    caller = Identity("coordinator", COORDINATOR)
    reps = 8 if cfg.quick else 20
    out = []
    try:
        for task in PADDED_TASKS:
            times: dict[str, list[float]] = {name: [] for name in services}
            overruns = 0
            order = list(services)
            for i in range(reps + 2):
                for name in order if i % 2 == 0 else reversed(order):
                    envelope = signer.sign(
                        str(uuid.uuid4()), QUERIES[task], EPSILON, AGREEMENT, now=datetime.now(UTC)
                    )
                    started = time.perf_counter()
                    try:
                        services[name].answer(caller, envelope, serialize_release)
                    except AnswerTimeExceeded:
                        overruns += 1
                    if i >= 2:
                        times[name].append(time.perf_counter() - started)
            padded, unpadded = median(times["padded"]), median(times["unpadded"])
            out.append(
                Row(
                    SUITE,
                    "accord-padded",
                    task,
                    rows,
                    epsilon=float(EPSILON),
                    median_s=padded,
                    p95_s=p95(times["padded"]),
                    extra={
                        "unpadded_p50_s": unpadded,
                        "ratio": padded / unpadded,
                        "budget_s": budget,
                        "min_padded_s": min(times["padded"]),
                        "overruns": overruns,
                        "reps": reps,
                    },
                )
            )
    finally:
        for service in services.values():
            service.close()
    return out


def run(cfg: BenchConfig) -> list[Row]:
    rows = public_path(cfg) + padding(cfg)
    for r in rows:
        ref = r.extra.get("shortcut_p50_s", r.extra.get("unpadded_p50_s"))
        assert isinstance(ref, float) and r.median_s is not None
        print(
            f"{r.system:>20} {r.task:>14}: p50 {r.median_s * 1000:.1f} ms vs {ref * 1000:.1f} ms "
            f"({r.extra['ratio']:.2f} x)",
            flush=True,
        )
    return rows
