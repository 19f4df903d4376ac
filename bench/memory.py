"""Suite "memory": peak resident memory of a node answering queries, against plain DuckDB's.

On the largest size in ``cfg.sizes`` (one row per person), each measurement is one fresh Python
process, started for it alone and measured by the kernel's ``ru_maxrss`` of that child
(:func:`os.wait4`), so nothing the benchmark itself holds is counted:

* ``accord``: start a node in-process from its config (load and check the dataset, as a real node
  does at start-up), then answer one query of each task of :data:`bench.data.QUERIES` through
  :meth:`node.service.NodeService.answer_once`;
* ``duckdb``: ``duckdb.connect()`` and the plain aggregate of each task on the same file.

Both children import only what they need (the node's packages, or ``duckdb``): the benchmark's own
imports (numpy, matplotlib) are not in either. The target is the issue's: the node's peak at most
1.5 x DuckDB's plus 200 MB. Each child runs ``cfg.reps`` times (at most 3) and the median peak is
reported, with the spread in ``extra``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import ROOT, BenchConfig, Row, median
from bench.data import COORDINATOR, QUERIES, ensure_dataset, node_config, plain_sql

SUITE = "memory"
TASK = "all_queries"

_ACCORD_CHILD = """
import json, sys, uuid
from fractions import Fraction
from node.config import load_node_config
from node.server import build_service
from protos import convert
from protos.identity import Identity
from protos.model import QueryRequest
config, caller, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
service = build_service(load_node_config(config))
who = Identity("coordinator", caller)
def serialize(release):
    return convert.release_to_pb(release).SerializeToString(deterministic=True)
for sql in queries:
    service.answer_once(who, QueryRequest(str(uuid.uuid4()), sql, Fraction(1)), serialize)
"""

_DUCKDB_CHILD = """
import json, sys
import duckdb
con = duckdb.connect()
for sql in json.loads(sys.argv[1]):
    con.execute(sql).fetchall()
"""


def peak_rss_mb(code: str, *args: str) -> tuple[float, float]:
    """Run ``python -c code args...`` in a fresh process from the repository root; return its peak
    resident memory in MB (``ru_maxrss`` of that child alone) and its wall time in seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=_env())
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"memory child exited with {proc.returncode}")
    return usage.ru_maxrss / 1024, elapsed  # Linux reports KiB


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def measure(cfg: BenchConfig, rows: int) -> list[Row]:
    data = ensure_dataset(cfg, rows, multi=False)
    config = node_config(data)
    accord_args = (str(config), COORDINATOR, json.dumps(list(QUERIES.values())))
    duck_args = (json.dumps([plain_sql(t, data) for t in QUERIES]),)
    reps = min(cfg.reps, 3)
    accord: list[float] = []
    duck: list[float] = []
    for _ in range(reps):  # interleaved, like every other comparison
        accord.append(peak_rss_mb(_ACCORD_CHILD, *accord_args)[0])
        duck.append(peak_rss_mb(_DUCKDB_CHILD, *duck_args)[0])
    a, d = median(accord), median(duck)
    limit = 1.5 * d + 200
    print(
        f"   memory {rows:>11,} rows  accord {a:7.0f} MB  duckdb {d:7.0f} MB  "
        f"limit {limit:.0f} MB ({'met' if a <= limit else 'MISSED'})",
        flush=True,
    )
    what = "load + one query of each task, fresh process"
    return [
        Row(SUITE, "duckdb", TASK, rows, peak_rss_mb=d, extra={"samples_mb": duck}, note=what),
        Row(
            SUITE,
            "accord",
            TASK,
            rows,
            epsilon=1.0,
            peak_rss_mb=a,
            extra={
                "samples_mb": accord,
                "ratio_vs_duckdb": round(a / d, 3),
                "limit_mb": round(limit, 1),
                "met": a <= limit,
            },
            note=what,
        ),
    ]


def run(cfg: BenchConfig) -> list[Row]:
    return measure(cfg, max(cfg.sizes))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run only the memory suite.")
    parser.add_argument("--quick", action="store_true", help="the quick size")
    parser.add_argument("--rows", type=int, default=None, help="size (default: the largest of the config)")
    args = parser.parse_args()
    cfg = BenchConfig(quick=args.quick)
    measure(cfg, args.rows or max(cfg.sizes))
