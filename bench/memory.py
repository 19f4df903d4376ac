"""Suite "memory": peak resident memory of a node answering queries, against plain DuckDB's.

On the largest size in ``cfg.sizes`` (one row per person), each measurement is one fresh Python
process, started for it alone, which reports its own ``VmHWM`` (the kernel's high-water mark of
its resident memory, from ``/proc/self/status``) when it is done. Not ``ru_maxrss``: Linux carries
the *parent's* resident size over into the child's ``ru_maxrss`` at fork/exec, so a benchmark
that just generated 10M rows would be charged to both children. Nothing the benchmark holds is
counted:

* ``accord``: start a node in-process from its config (load and check the dataset, as a real node
  does at start-up), then answer one query of each task of :data:`bench.data.QUERIES` through
  :meth:`accord.node.service.NodeService.answer`;
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

_HWM = """
def _vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
"""

_ACCORD_CHILD = (
    _HWM
    + """
import json, sys, uuid
from accord.node.config import load_node_config
from accord.node.server import build_service
from accord.node.servicer import serialize_release
from accord.policies.identity import Identity
from bench.data import AGREEMENT, analyst_signer
config, caller, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
node = load_node_config(config)
service = build_service(node)
who = Identity("coordinator", caller)
analyst = analyst_signer(node.tls_ca.parent)
for sql in queries:
    service.answer(who, analyst.sign(str(uuid.uuid4()), sql, "1", AGREEMENT), serialize_release)
print("VmHWM_MB", _vm_hwm_mb())
"""
)

_DUCKDB_CHILD = (
    _HWM
    + """
import json, sys
import duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
for sql in json.loads(sys.argv[1]):
    con.execute(sql).fetchall()
print("VmHWM_MB", _vm_hwm_mb())
"""
)


def peak_rss_mb(code: str, *args: str) -> tuple[float, float]:
    """Run ``python -c code args...`` in a fresh process from the repository root; return the peak
    resident memory it reported (MB, its ``VmHWM``) and its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=_env(), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"memory child exited with {done.returncode}: {done.stderr[-2000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("VmHWM_MB "):
            return float(line.split()[1]), elapsed
    raise RuntimeError("memory child did not report its peak")


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
    accord_s: list[float] = []
    duck_s: list[float] = []
    for _ in range(reps):  # interleaved, like every other comparison
        mb, seconds = peak_rss_mb(_ACCORD_CHILD, *accord_args)
        accord.append(mb)
        accord_s.append(seconds)
        mb, seconds = peak_rss_mb(_DUCKDB_CHILD, *duck_args)
        duck.append(mb)
        duck_s.append(seconds)
    a, d = median(accord), median(duck)
    limit = 1.5 * d + 200
    print(
        f"   memory {rows:>11,} rows  accord {a:7.0f} MB  duckdb {d:7.0f} MB  "
        f"limit {limit:.0f} MB ({'met' if a <= limit else 'MISSED'})",
        flush=True,
    )
    what = "load + one query of each task, fresh process"
    return [
        Row(
            SUITE,
            "duckdb",
            TASK,
            rows,
            peak_rss_mb=d,
            extra={"samples_mb": duck, "process_seconds": round(median(duck_s), 2)},
            note=what,
        ),
        Row(
            SUITE,
            "accord",
            TASK,
            rows,
            epsilon=1.0,
            peak_rss_mb=a,
            extra={
                "samples_mb": accord,
                "process_seconds": round(median(accord_s), 2),  # includes the load-time checks
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
