"""Suite "throughput": small federated queries from 16 concurrent analysts against 4 nodes.

Four ``accord node serve`` processes and one ``accord coordinator serve`` process, as in
:mod:`bench.federated`. Sixteen analyst threads, each with its own certificate and its own
:class:`~coordinator.client.AccordClient` (its own mTLS channel), send small queries (``count`` and
``filtered_count`` of :data:`bench.data.QUERIES`, alternating, each with a fresh query id) as fast
as answers come back, for a fixed window after a short warm-up under the same load.

Each node is configured for this load as its operator would (``max_workers = 16``: as many
queries at once as there are analysts; the default 8 would refuse the excess with
RESOURCE_EXHAUSTED, and the coordinator would return partial answers).

Reported: complete answers per second within the window (``qps``: an answer counts only when all
four nodes contributed), the latency each analyst saw (p50, p95), and what went wrong (refusals,
partial answers) in ``extra``, never silently dropped.

    python -m bench.throughput --quick       # 3 s window
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from accord.coordinator.client import AccordClient
from accord.errors import AccordError
from bench.cluster import EPSILON, federation, node_rows
from bench.common import BenchConfig, Row, median, p95, write_json
from bench.data import AGREEMENT, QUERIES

SUITE = "throughput"
NODES = 4
ANALYSTS = 16
SMALL = ("count", "filtered_count")


def window(cfg: BenchConfig) -> float:
    """Seconds measured (after the warm-up)."""
    return 3.0 if cfg.quick else 20.0


def warmup(cfg: BenchConfig) -> float:
    return 1.0 if cfg.quick else 3.0


@dataclass
class _Tally:
    """One analyst's results inside the window."""

    latencies: list[float] = field(default_factory=list)
    partial: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def _analyst(
    client: AccordClient, offset: int, start: threading.Barrier, t0: list[float], span: tuple[float, float]
) -> _Tally:
    tally = _Tally()
    start.wait()
    begin, end = t0[0] + span[0], t0[0] + span[1]
    i = offset
    while True:
        sql = QUERIES[SMALL[i % len(SMALL)]]
        i += 1
        sent = time.perf_counter()
        if sent >= end:
            return tally
        try:
            release = client.query_release(sql, EPSILON, timeout=30)
            ok, partial, kind = True, release.partial or len(release.contributing_nodes) != NODES, ""
        except AccordError as err:
            ok, partial, kind = False, False, type(err).__name__
        done = time.perf_counter()
        if not begin <= done <= end:
            continue
        if not ok:
            tally.errors[kind] = tally.errors.get(kind, 0) + 1
        elif partial:
            tally.partial += 1
        else:
            tally.latencies.append(done - sent)


def _load(
    clients: list[AccordClient], span: tuple[float, float], cpu: Callable[[], dict[str, float]]
) -> tuple[list[_Tally], dict[str, float]]:
    """Run one analyst thread per client: their tallies (an analyst's failure is re-raised) and the
    CPU seconds each part of the system spent within the window (``cpu()`` samples them)."""
    start = threading.Barrier(len(clients) + 1)
    t0 = [0.0]
    results: list[_Tally | None] = [None] * len(clients)
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = _analyst(clients[k], k, start, t0, span)
        except BaseException as err:  # re-raised below: a lost analyst is never hidden
            failures.append(err)
            start.abort()

    threads = [threading.Thread(target=work, args=(k,), name=f"analyst-{k}") for k in range(len(clients))]
    for thread in threads:
        thread.start()
    t0[0] = time.perf_counter()
    spent: dict[str, float] = {}
    try:
        start.wait()
        time.sleep(max(0.0, t0[0] + span[0] - time.perf_counter()))
        before = cpu()
        time.sleep(max(0.0, t0[0] + span[1] - time.perf_counter()))
        spent = {k: v - before[k] for k, v in cpu().items()}
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return [r for r in results if r is not None], spent


def measure(cfg: BenchConfig, seconds: float | None = None, state: str = "sqlite") -> Row:
    """One window of load against nodes keeping their state in ``state`` (``sqlite``, as operators
    run them, or ``memory``, the reference for what durable state costs)."""
    seconds = seconds or window(cfg)
    rows_per_node = node_rows(cfg)
    clients: list[AccordClient] = []
    with (
        federation(
            cfg,
            nodes=NODES,
            analysts=ANALYSTS,
            rows_per_node=rows_per_node,
            node_workers=ANALYSTS,
            state=state,
        ) as fed,
        fed.coordinator(fed.node_names) as address,
    ):
        try:
            for analyst in fed.analysts:
                clients.append(AccordClient(address, fed.analyst_tls(analyst), agreement=AGREEMENT))
                # Connect and let the coordinator fetch the catalogs before the clock starts.
                clients[-1].query_release(QUERIES["count"], EPSILON, timeout=60)
            procs = {
                "analysts": [psutil.Process()],
                "coordinator": [psutil.Process(fed.pid(f"coordinator-{NODES}"))],
                "nodes": [psutil.Process(fed.pid(n)) for n in fed.node_names],
            }

            def cpu() -> dict[str, float]:
                return {k: sum(sum(p.cpu_times()[:2]) for p in ps) for k, ps in procs.items()}

            tallies, spent = _load(clients, (warmup(cfg), warmup(cfg) + seconds), cpu)
        finally:
            for client in clients:
                client.close()
    latencies = [x for t in tallies for x in t.latencies]
    errors: dict[str, int] = {}
    for tally in tallies:
        for k, v in tally.errors.items():
            errors[k] = errors.get(k, 0) + v
    partial = sum(t.partial for t in tallies)
    extra: dict[str, object] = {
        "qps": len(latencies) / seconds,
        "analysts": ANALYSTS,
        "window_s": seconds,
        "answers": len(latencies),
        "partial": partial,
        "errors": sum(errors.values()),
        # CPU seconds per complete answer, by part (this process runs only the analyst threads)
        **{f"{k}_cpu_s": v / max(1, len(latencies)) for k, v in spent.items()},
    }
    note = ""
    if errors or partial:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(errors.items()))
        note = f"not counted: {partial} partial answers" + (f"; refused: {listed}" if listed else "")
    extra["state"] = state
    return Row(
        SUITE,
        "accord" if state == "sqlite" else f"accord-{state}-state",
        "+".join(SMALL),
        rows=rows_per_node * NODES,
        nodes=NODES,
        epsilon=float(EPSILON),
        median_s=median(latencies) if latencies else None,
        p95_s=p95(latencies) if latencies else None,
        extra=extra,
        note=note,
    )


def run(cfg: BenchConfig) -> list[Row]:
    """Durable nodes (as operators run them) and, in the same run, nodes with in-memory state: the
    ratio is what recording every answer durably costs the federation's throughput."""
    durable = measure(cfg)
    print(_line(durable), flush=True)
    reference = measure(cfg, state="memory")
    print(_line(reference), flush=True)
    if reference.extra["qps"]:
        durable.extra["ratio_vs_memory_state"] = durable.extra["qps"] / reference.extra["qps"]  # type: ignore[operator]
    return [durable, reference]


def _line(r: Row) -> str:
    e = r.extra
    lat = (
        f"p50 {r.median_s * 1000:.1f} ms p95 {r.p95_s * 1000:.1f} ms"
        if r.median_s is not None and r.p95_s is not None
        else "no answers"
    )
    cpu = ", ".join(f"{k[:-6]} {v * 1000:.1f} ms" for k, v in e.items() if k.endswith("_cpu_s"))
    return (
        f"{r.task} at {r.nodes} nodes, {e['analysts']} analysts: {e['qps']:.0f} q/s "
        f"({e['answers']} answers in {e['window_s']:.0f} s), {lat}; CPU per answer: {cpu}  {r.note}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run only the throughput suite.")
    parser.add_argument("--quick", action="store_true", help="a 3 s window on 5,000 rows per node")
    parser.add_argument("--seconds", type=float, default=None, help="length of the measured window")
    parser.add_argument("--json", type=str, default=None, help="also write the row to this file")
    args = parser.parse_args(argv)
    cfg = BenchConfig(quick=args.quick)
    rows = [measure(cfg, args.seconds), measure(cfg, args.seconds, state="memory")]
    for row in rows:
        print(_line(row), flush=True)
    if args.json:
        write_json([asdict(r) for r in rows], Path(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
