"""Suite "federated": the standard queries end to end through the coordinator, over mTLS on loopback.

Every node (up to 16) is its own ``accord node serve`` process with its own Parquet slice
(:mod:`bench.cluster`); for each node count N in ``cfg.node_counts`` a coordinator process is
started with the first N nodes, and one analyst sends the queries of :data:`bench.data.QUERIES`
through :class:`~coordinator.client.AccordClient`, one at a time, each with a fresh query id (so
every node really computes and adds fresh noise; nothing is served from the release store).

Per query and N it reports the end-to-end latency the analyst sees (p50, p95) and the
**coordination overhead**: end-to-end latency minus the slowest node's own execution time *for the
same query*. The nodes measure that time themselves, from the moment their handler receives the
request to the moment it hands the reply to gRPC, and send it as trailing metadata; the
coordinator forwards the largest (see :mod:`accord.rpc.timing`). The overhead is thus everything the
federation adds: the analyst's and the nodes' network hops and TLS, the coordinator's parsing,
validation, fan-out and combination, gRPC's own (de)serialisation and the client. Medians and
95th percentiles are taken over the per-query differences, not differences of medians.

Also in ``extra``: ``slowest_node_p50_s`` and ``coordinator_p50_s`` (the coordinator's own
handler time), so the overhead can be split into "coordinator" and "analyst hop"; and the CPU
time the coordinator process and all N node processes together spent per query
(``coordinator_cpu_s``, ``nodes_cpu_s``; means, from the kernel's per-process accounting). On a
shared, busy machine wall-clock times swing with the neighbours' load, while CPU per query
measures our own work. (The kernel counts CPU in 10 ms ticks: these are means over many
queries.) ``cpu_floor_s`` is that CPU divided by the machine's cores: no schedule of the N+1
processes could answer faster on this machine, however parallel the fan-out. When the nodes
outnumber the cores, latency grows with N because of it.

    python -m bench.federated --quick          # 1 and 2 nodes, small slices
    python -m bench.federated --nodes 8        # one node count
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict

import psutil

from accord.coordinator.client import AccordClient
from bench.cluster import EPSILON, Cluster, federation, node_rows
from bench.common import BenchConfig, Row, median, p95, write_json
from bench.data import AGREEMENT, QUERIES

SUITE = "federated"
WARMUP_ROUNDS = 2  # the first queries also fetch the catalogs and open the node channels


def rounds(cfg: BenchConfig) -> int:
    """Measured queries per task and node count (enough for a 95th percentile to mean something)."""
    return 10 if cfg.quick else 40


def measure(
    cfg: BenchConfig, fed: Cluster, n: int, rows_per_node: int, n_rounds: int, analyst: str
) -> list[Row]:
    """The rows for ``n`` nodes: tasks interleaved round by round, so drifting machine load hits
    every task alike."""
    latency: dict[str, list[float]] = {task: [] for task in QUERIES}
    overhead: dict[str, list[float]] = {task: [] for task in QUERIES}
    slowest: dict[str, list[float]] = {task: [] for task in QUERIES}
    coordinator: dict[str, list[float]] = {task: [] for task in QUERIES}
    partial: dict[str, int] = dict.fromkeys(QUERIES, 0)
    cpu: dict[str, list[float]] = {task: [0.0, 0.0] for task in QUERIES}  # coordinator, nodes
    with (
        fed.coordinator(fed.node_names[:n]) as address,
        AccordClient(address, fed.analyst_tls(analyst), agreement=AGREEMENT) as client,
    ):
        coordinator_proc = psutil.Process(fed.pid(f"coordinator-{n}"))
        node_procs = [psutil.Process(fed.pid(name)) for name in fed.node_names[:n]]
        for i in range(WARMUP_ROUNDS + n_rounds):
            for task, sql in QUERIES.items():
                before = _cpu(coordinator_proc), sum(_cpu(p) for p in node_procs)
                started = time.perf_counter()
                release, timing = client.query_release_timed(sql, EPSILON, timeout=60)
                elapsed = time.perf_counter() - started
                if i < WARMUP_ROUNDS:
                    continue
                cpu[task][0] += _cpu(coordinator_proc) - before[0]
                cpu[task][1] += sum(_cpu(p) for p in node_procs) - before[1]
                if release.partial or len(release.contributing_nodes) != n:
                    partial[task] += 1
                latency[task].append(elapsed)
                if timing.slowest_node_seconds is not None:
                    slowest[task].append(timing.slowest_node_seconds)
                    overhead[task].append(elapsed - timing.slowest_node_seconds)
                if timing.coordinator_seconds is not None:
                    coordinator[task].append(timing.coordinator_seconds)
    out = []
    for task in QUERIES:
        queries = len(latency[task])
        extra: dict[str, object] = {
            "rows_per_node": rows_per_node,
            "queries": queries,
            "coordinator_cpu_s": cpu[task][0] / queries,
            "nodes_cpu_s": cpu[task][1] / queries,
            "cpu_floor_s": (cpu[task][0] + cpu[task][1]) / queries / (os.cpu_count() or 1),
        }
        if overhead[task]:
            extra.update(
                overhead_p50_s=median(overhead[task]),
                overhead_p95_s=p95(overhead[task]),
                slowest_node_p50_s=median(slowest[task]),
            )
        if coordinator[task]:
            extra["coordinator_p50_s"] = median(coordinator[task])
        note = ""
        if partial[task]:
            note = f"{partial[task]} of {len(latency[task])} answers were partial"
        elif not overhead[task]:
            note = "the coordinator reported no node timings; overhead not measured"
        out.append(
            Row(
                SUITE,
                "accord",
                task,
                rows=rows_per_node * n,
                nodes=n,
                epsilon=float(EPSILON),
                median_s=median(latency[task]),
                p95_s=p95(latency[task]),
                extra=extra,
                note=note,
            )
        )
    return out


def _cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` so far (its threads included)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def run(
    cfg: BenchConfig, node_counts: tuple[int, ...] | None = None, n_rounds: int | None = None
) -> list[Row]:
    counts = node_counts or cfg.node_counts
    rows_per_node = node_rows(cfg)
    out: list[Row] = []
    with federation(cfg, nodes=max(counts), analysts=1, rows_per_node=rows_per_node) as fed:
        for n in counts:
            got = measure(cfg, fed, n, rows_per_node, n_rounds or rounds(cfg), fed.analysts[0])
            for r in got:
                print(_line(r), flush=True)
            out.extend(got)
    return out


def _line(r: Row) -> str:
    ms = 1000.0
    e = r.extra
    parts = [f"{r.task:>15} N={r.nodes:<2} p50 {r.median_s * ms:7.1f} ms  p95 {r.p95_s * ms:7.1f} ms"]  # type: ignore[operator]
    if "overhead_p50_s" in e:
        parts.append(
            f"overhead p50 {e['overhead_p50_s'] * ms:6.1f} ms p95 {e['overhead_p95_s'] * ms:6.1f} ms"
            f"  slowest node {e['slowest_node_p50_s'] * ms:6.1f} ms"
            f"  coordinator {e.get('coordinator_p50_s', float('nan')) * ms:6.1f} ms"
        )
    parts.append(
        f"cpu/query: coordinator {e['coordinator_cpu_s'] * ms:5.1f} ms nodes {e['nodes_cpu_s'] * ms:5.1f} ms"
    )
    if r.note:
        parts.append(r.note)
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run only the federated suite.")
    parser.add_argument("--quick", action="store_true", help="1 and 2 nodes, 5,000 rows per node")
    parser.add_argument("--nodes", type=int, action="append", help="a node count to run (repeatable)")
    parser.add_argument("--rounds", type=int, default=None, help="measured queries per task and N")
    parser.add_argument("--json", type=str, default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    cfg = BenchConfig(quick=args.quick)
    rows = run(cfg, tuple(args.nodes) if args.nodes else None, args.rounds)
    if args.json:
        from pathlib import Path

        write_json([asdict(r) for r in rows], Path(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
