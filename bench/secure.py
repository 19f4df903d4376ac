"""Suite "secure": what secure aggregation (distributed discrete Gaussian noise) costs in accuracy
and in latency, each against a reference measured in the same run.

**Accuracy.** A COUNT (L2 sensitivity 1, one group) at epsilon 1, delta 1e-9, for N in
:data:`NODE_COUNTS` nodes. The error is the noise itself (an exact count of 0: the error of a count
does not depend on its value); each cell draws :func:`samples` releases of each of:

* ``secure``: the sum of N shares, each :func:`node.dp_gaussian.add_share` at
  ``share_scale(1, rho, honest=N, dims=1)`` (every node honest), ``rho = rho_for(1, 1e-9)``;
* its reference, ``central Gaussian``: one draw at ``share_scale(1, rho, honest=1, dims=1)``: a
  trusted curator adding the discrete Gaussian noise of the same (epsilon, delta) guarantee once;
* ``independent`` (today's mode for datasets that are not secure-aggregated): the sum of N
  discrete Laplace draws at ``calibrate(1, 1, integer=True)``, every node protecting its own answer
  at the query's epsilon;
* its reference, ``central Laplace``: one such discrete Laplace draw.

Rows report the RMSE (``error``) and the ratio to the mode's own central reference with its
standard error (delta method on the mean squared error of both finite samples). Targets: secure /
central Gaussian at most :data:`ACCURACY_TARGET` (the shares sum to the central noise, so about
1); independent / central Laplace is expected to be about sqrt(N). ``ratio_to_independent``
compares the two modes' absolute errors (the Gaussian's delta costs a constant factor at one
group, so independent mode can be the more accurate one at few nodes). The plot
``secure_error_vs_nodes.png`` (written into the run's ``--out`` folder) shows both.

**Latency.** A real federation of :data:`LATENCY_NODES` nodes (and, in full mode, one of 2 and
one of 4: :func:`latency_node_counts`), started as the federated suite starts one
(:mod:`bench.cluster`): every node its own ``accord node serve`` process over mTLS on loopback
with its own Parquet slice of citizens (:func:`bench.cluster.node_data`), a coordinator process
(:meth:`bench.cluster.Cluster.coordinator`), the analyst's client in the benchmark's process.
Every node holds two datasets over the same file: ``citizens`` (bench.data's config, answered
independently) and ``citizens_secure``, secure-aggregated with ``honest_nodes`` equal to the node
count; the bench agreement covers both. No answer-time padding, as in the rest of the bench, so
the difference is the protocol's. ``COUNT(*)`` on each with fresh query ids, interleaved round by
round after warm-up. Reported: p50/p95 of both, the p50 difference (target: at most
:data:`LATENCY_TARGET_MS` ms) and ratio, the coordinator's own handler time, and the CPU the
coordinator process and all node processes spent per query (on a machine with fewer cores than
processes, the nodes' parallel work queues up; ``cpu_floor_s`` is that CPU over the cores).

    python -m bench.secure --quick
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import psutil
import tomli_w

from accord.coordinator.client import AccordClient
from accord.demo.processes import accord_command, spawn
from accord.node import dp, dp_gaussian
from accord.node.config import StateConfig, load_node_config
from accord.node.config_writer import write_node_config
from accord.policies.pki import init_federation
from accord.query.schema import SecureAggregation
from bench.cluster import (
    START_TIMEOUT,
    Cluster,
    analyst_name,
    node_data,
    node_name,
    node_rows,
    sigterm_unwinds,
    stop_all,
)
from bench.common import ROOT, BenchConfig, Row, median, p95
from bench.data import AGREEMENT, COORDINATOR, DATASET, node_config

SUITE = "secure"
NODE_COUNTS = (2, 4, 8, 16)
EPSILON = Fraction(1)
DELTA = Fraction(1, 10**9)
DELTA_TEXT = "1e-9"
ACCURACY_TARGET = 1.1
LATENCY_NODES = 8
LATENCY_TARGET_MS = 5.0
PLOT = "secure_error_vs_nodes.png"
PLAIN_DATASET = DATASET  # "citizens", as bench.data writes it
SECURE_DATASET = f"{DATASET}_secure"  # the same file, secure-aggregated
CHUNK = 400_000
"""Noise draws asked of OpenDP in one call (one vector; bounded so memory stays small)."""


def samples(cfg: BenchConfig) -> int:
    """Releases per cell (mode x N): 200,000 puts the standard error of an RMSE ratio near 0.2%."""
    return 5_000 if cfg.quick else 200_000


def latency_node_counts(cfg: BenchConfig) -> tuple[int, ...]:
    """Federation sizes timed, each its own federation (``honest_nodes`` is the node count, so every
    holder must answer): :data:`LATENCY_NODES` only in quick mode."""
    return (LATENCY_NODES,) if cfg.quick else (2, 4, LATENCY_NODES)


def latency_rounds(cfg: BenchConfig) -> int:
    """Measured queries per dataset (each round asks both, in alternating order)."""
    return 10 if cfg.quick else 60


def warmup_rounds(cfg: BenchConfig) -> int:
    """Unmeasured rounds: the first queries open the channels and fetch the catalogs."""
    return 2 if cfg.quick else 5


# ---- accuracy ----------------------------------------------------------------------------------


def summed_noise(draw: Callable[[list[int]], list[int]], terms: int, n: int) -> np.ndarray:
    """``n`` samples of the sum of ``terms`` independent draws of ``draw`` (noise added to zeros)."""
    per_call = max(1, CHUNK // terms)
    parts: list[np.ndarray] = []
    left = n
    while left:
        k = min(left, per_call)
        noise = np.asarray(draw([0] * (k * terms)), dtype=np.int64).reshape(k, terms)
        parts.append(noise.sum(axis=1))
        left -= k
    return np.concatenate(parts)


def rmse(errors: np.ndarray) -> tuple[float, float]:
    """Root mean squared error and its standard error (delta method: se(MSE) / (2 RMSE))."""
    squares = errors.astype(np.float64) ** 2
    mse = float(squares.mean())
    se_mse = float(squares.std(ddof=1)) / math.sqrt(len(squares))
    root = math.sqrt(mse)
    return root, (se_mse / (2 * root) if root else math.nan)


def ratio(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """``a / b`` and its standard error, for independent estimates given as (value, se)."""
    r = a[0] / b[0]
    return r, r * math.hypot(a[1] / a[0], b[1] / b[0])


def discrete_laplace_sd(scale: float) -> float:
    """Standard deviation of ``P(k) ∝ exp(-|k|/scale)``: variance ``2t / (1 - t)²``, ``t = e^(-1/scale)``."""
    t = math.exp(-1.0 / scale)
    return math.sqrt(2 * t) / -math.expm1(-1.0 / scale)


def gaussian(sigma: float) -> Callable[[list[int]], list[int]]:
    """A node's discrete Gaussian share of scale ``sigma`` (OpenDP, through the node's own code)."""
    return lambda values: dp_gaussian.add_share(values, sigma)


def discrete_laplace(scale: float) -> Callable[[list[int]], list[int]]:
    """A node's discrete Laplace noise of ``scale`` (OpenDP, through the node's own code)."""
    return lambda values: dp.add_noise(values, scale, True)


def accuracy(cfg: BenchConfig, node_counts: Sequence[int] = NODE_COUNTS) -> list[Row]:
    n = samples(cfg)
    rho = dp_gaussian.rho_for(EPSILON, DELTA)
    central_sigma = dp_gaussian.share_scale(1, rho, 1, 1)
    laplace = dp.calibrate(1, EPSILON, True)
    rows: list[Row] = []
    for nodes in node_counts:
        sigma = dp_gaussian.share_scale(1, rho, nodes, 1)
        secure = rmse(summed_noise(gaussian(sigma), nodes, n))
        central = rmse(summed_noise(gaussian(central_sigma), 1, n))
        independent = rmse(summed_noise(discrete_laplace(laplace), nodes, n))
        central_laplace = rmse(summed_noise(discrete_laplace(laplace), 1, n))
        s_ratio, s_se = ratio(secure, central)
        i_ratio, i_se = ratio(independent, central_laplace)
        common = {"metric": "rmse", "samples": n, "delta": float(DELTA)}
        rows.append(
            Row(
                SUITE,
                "accord-secure",
                "count",
                0,
                nodes=nodes,
                epsilon=float(EPSILON),
                error=secure[0],
                extra=common
                | {
                    "rmse_se": secure[1],
                    "central_rmse": central[0],
                    "central_rmse_se": central[1],
                    "ratio_to_central": s_ratio,
                    "ratio_se": s_se,
                    "target_ratio": ACCURACY_TARGET,
                    "target_met": s_ratio <= ACCURACY_TARGET,
                    "predicted_rmse": math.sqrt(nodes) * sigma,
                    "share_sigma": sigma,
                    "central_sigma": central_sigma,
                    "rho": float(rho),
                    "ratio_to_independent": secure[0] / independent[0],
                },
                note=(
                    f"RMSE of the sum of {nodes} discrete Gaussian shares (honest_nodes={nodes}) over {n:,} "
                    "releases; reference: one central discrete Gaussian draw at the same (epsilon, delta), "
                    f"{n:,} releases"
                ),
            )
        )
        rows.append(
            Row(
                SUITE,
                "accord-independent",
                "count",
                0,
                nodes=nodes,
                epsilon=float(EPSILON),
                error=independent[0],
                extra=common
                | {
                    "rmse_se": independent[1],
                    "central_rmse": central_laplace[0],
                    "central_rmse_se": central_laplace[1],
                    "ratio_to_central": i_ratio,
                    "ratio_se": i_se,
                    "expected_ratio": math.sqrt(nodes),
                    "ratio_to_expected": i_ratio / math.sqrt(nodes),
                    "predicted_rmse": math.sqrt(nodes) * discrete_laplace_sd(laplace),
                    "laplace_scale": laplace,
                },
                note=(
                    f"RMSE of the sum of {nodes} discrete Laplace draws (each node at the query's epsilon) "
                    f"over {n:,} releases; reference: one such draw (a central curator), {n:,} releases; "
                    "expected ratio sqrt(N)"
                ),
            )
        )
    return rows


def plot(rows: list[Row], out: Path) -> Path | None:
    """RMSE against N for both modes and their central references (left) and the ratios (right)."""
    secure = sorted((r for r in rows if r.system == "accord-secure" and r.error), key=lambda r: r.nodes)
    indep = sorted((r for r in rows if r.system == "accord-independent" and r.error), key=lambda r: r.nodes)
    if not secure or not indep:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    xs = [r.nodes for r in secure]
    left.plot(xs, [r.error for r in secure], marker="o", color="C0", label="secure: sum of N Gaussian shares")
    left.plot(
        xs, [r.extra["central_rmse"] for r in secure], ls="--", color="C0", label="central discrete Gaussian"
    )
    xi = [r.nodes for r in indep]
    left.plot(
        xi, [r.error for r in indep], marker="s", color="C1", label="independent: sum of N discrete Laplace"
    )
    left.plot(
        xi, [r.extra["central_rmse"] for r in indep], ls="--", color="C1", label="central discrete Laplace"
    )
    left.set_ylabel("RMSE of a count")
    left.set_title(f"COUNT at ε={float(EPSILON):g}, δ={DELTA_TEXT}")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("nodes N")
        ax.grid(True, alpha=0.3)
    right.errorbar(
        xs,
        [r.extra["ratio_to_central"] for r in secure],
        yerr=[2 * r.extra["ratio_se"] for r in secure],
        marker="o",
        capsize=3,
        color="C0",
        label="secure / central Gaussian",
    )
    right.errorbar(
        xi,
        [r.extra["ratio_to_central"] for r in indep],
        yerr=[2 * r.extra["ratio_se"] for r in indep],
        marker="s",
        capsize=3,
        color="C1",
        label="independent / central Laplace",
    )
    right.plot(xi, [math.sqrt(x) for x in xi], ls=":", color="grey", label="sqrt(N)")
    right.axhline(ACCURACY_TARGET, color="red", ls="--", lw=1, label=f"target {ACCURACY_TARGET}")
    right.set_ylabel("RMSE / central RMSE (±2 se)")
    right.set_title("Error relative to a trusted curator")
    left.legend(fontsize="small")
    right.legend(fontsize="small")
    fig.suptitle(f"Error against node count ({secure[0].extra['samples']:,} releases per point)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / PLOT
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- latency -----------------------------------------------------------------------------------


def _node_config(root: Path, name: str, data: Path, nodes: int, analysts: tuple[str, ...]) -> Path:
    """Node ``name``'s config file: :func:`bench.data.node_config` (dataset ``citizens`` over
    ``data``, no answer-time padding, the bench agreement, SQLite state as an operator runs it),
    with a second dataset :data:`SECURE_DATASET` over the same file, secure-aggregated with every
    one of the ``nodes`` holders assumed honest, and the agreement extended to cover it."""
    path = node_config(
        data,
        out=root / f"{name}.toml",
        name=name,
        pki=root / "certs",
        coordinators=(COORDINATOR,),
        state=StateConfig("sqlite", root / "state" / f"{name}.sqlite3"),
        analysts=analysts,
        report_node_seconds=True,
    )
    base = load_node_config(path)
    (plain,) = base.datasets
    holders = tuple(sorted(node_name(i) for i in range(nodes)))
    setting = SecureAggregation(nodes, DELTA_TEXT, holders)
    secure = dataclasses.replace(
        plain,
        schema=dataclasses.replace(plain.schema, name=SECURE_DATASET, secure=setting),
        secure_aggregation=True,
        holders=holders,
    )
    write_node_config(dataclasses.replace(base, datasets=(plain, secure)), path)
    # the same agreement, its terms for the plain dataset repeated for the secure one
    agreement = base.agreements_dir / f"{AGREEMENT}.toml"
    terms = tomllib.loads(agreement.read_text(encoding="utf-8"))
    terms["datasets"][SECURE_DATASET] = terms["datasets"][PLAIN_DATASET]
    agreement.write_text(tomli_w.dumps(terms), encoding="utf-8")
    return path


@contextlib.contextmanager
def secure_federation(cfg: BenchConfig, nodes: int, rows_per_node: int) -> Iterator[Cluster]:
    """:func:`bench.cluster.federation` with :func:`_node_config`'s two datasets: ``nodes``
    ``accord node serve`` processes, each on its own slice of citizens, started together and
    ready to answer; everything is stopped and the folder removed when the block ends."""
    cfg.work.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="secure-federation-", dir=cfg.work))
    cluster = Cluster(root, {}, (analyst_name(0),))
    names = [node_name(i) for i in range(nodes)]
    with sigterm_unwinds():
        try:
            init_federation(root / "certs", COORDINATOR, names, cluster.analysts)
            for i, name in enumerate(names):
                config = _node_config(root, name, node_data(cfg, rows_per_node, i), nodes, cluster.analysts)
                proc = spawn(name, accord_command("node", "serve", "--config", str(config)), ROOT)
                cluster.processes.append(proc)
            for proc in list(cluster.processes):
                cluster.node_ports[proc.name] = proc.wait_for_port(START_TIMEOUT)
            yield cluster
        finally:
            stop_all(cluster.processes)
            shutil.rmtree(root, ignore_errors=True)


def _cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` so far (its threads included)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def latency(cfg: BenchConfig, nodes: int = LATENCY_NODES, rounds: int | None = None) -> list[Row]:
    n_rounds = latency_rounds(cfg) if rounds is None else rounds
    rows_per_node = node_rows(cfg)
    datasets = (SECURE_DATASET, PLAIN_DATASET)
    expected = {SECURE_DATASET: "secure", PLAIN_DATASET: "independent"}
    times: dict[str, list[float]] = {d: [] for d in datasets}
    coordinator: dict[str, list[tuple[float, float]]] = {d: [] for d in datasets}  # (handler, total)
    cpu: dict[str, list[float]] = {d: [0.0, 0.0] for d in datasets}  # coordinator, nodes
    started = time.perf_counter()
    with (
        secure_federation(cfg, nodes, rows_per_node) as fed,
        fed.coordinator(fed.node_names) as address,
        AccordClient(address, fed.analyst_tls(fed.analysts[0]), agreement=AGREEMENT, retries=0) as client,
    ):
        start_s = time.perf_counter() - started
        coordinator_proc = psutil.Process(fed.pid(f"coordinator-{nodes}"))
        node_procs = [psutil.Process(fed.pid(name)) for name in fed.node_names]
        for i in range(warmup_rounds(cfg) + n_rounds):
            for dataset in datasets if i % 2 == 0 else reversed(datasets):
                before = _cpu(coordinator_proc), sum(_cpu(p) for p in node_procs)
                t0 = time.perf_counter()
                release, timing = client.query_release_timed(
                    f"SELECT COUNT(*) FROM {dataset}", str(EPSILON), timeout=60
                )
                elapsed = time.perf_counter() - t0
                if release.aggregation != expected[dataset] or len(release.contributing_nodes) != nodes:
                    raise RuntimeError(
                        f"{dataset}: a {release.aggregation} answer from "
                        f"{len(release.contributing_nodes)} node(s), expected {expected[dataset]} "
                        f"from {nodes}: the benchmark would not measure what it says"
                    )
                if i < warmup_rounds(cfg):
                    continue
                cpu[dataset][0] += _cpu(coordinator_proc) - before[0]
                cpu[dataset][1] += sum(_cpu(p) for p in node_procs) - before[1]
                times[dataset].append(elapsed)
                if timing.coordinator_seconds is not None:
                    coordinator[dataset].append((timing.coordinator_seconds, elapsed))
    return _latency_rows(times, coordinator, cpu, nodes, rows_per_node, n_rounds, start_s)


def _latency_rows(
    times: dict[str, list[float]],
    coordinator: dict[str, list[tuple[float, float]]],
    cpu: dict[str, list[float]],
    nodes: int,
    rows_per_node: int,
    n_rounds: int,
    start_s: float,
) -> list[Row]:
    sec, plain = times[SECURE_DATASET], times[PLAIN_DATASET]
    added_ms = (median(sec) - median(plain)) * 1000
    added_cpu_ms = (cpu[SECURE_DATASET][1] / len(sec) - cpu[PLAIN_DATASET][1] / len(plain)) * 1000
    cores = os.cpu_count() or 1

    def split(dataset: str) -> dict[str, float]:
        queries = len(times[dataset])
        out = {
            "queries": queries,
            "rows_per_node": rows_per_node,
            "coordinator_cpu_s": cpu[dataset][0] / queries,
            "nodes_cpu_s": cpu[dataset][1] / queries,
            "cpu_floor_s": (cpu[dataset][0] + cpu[dataset][1]) / queries / cores,
        }
        mine = coordinator[dataset]
        if mine:  # per-query differences, not differences of medians
            out["coordinator_p50_s"] = median([c for c, _ in mine])
            out["outside_coordinator_p50_s"] = median([t - c for c, t in mine])
        return out

    setup = (
        f"{nodes} node processes (accord node serve, SQLite state, one Parquet slice of "
        f"{rows_per_node:,} rows each, no answer-time padding) and a coordinator process on "
        f"{cores} core(s), the client in the benchmark's process, mTLS on loopback, "
        f"{n_rounds} interleaved rounds after warm-up"
    )
    plain_row = Row(
        SUITE,
        "accord-plain",
        "count_latency",
        rows_per_node * nodes,
        nodes=nodes,
        epsilon=float(EPSILON),
        median_s=median(plain),
        p95_s=p95(plain),
        extra=split(PLAIN_DATASET),
        note=(
            f"reference: COUNT(*) on {PLAIN_DATASET!r}, independent mode (one round, no masking), over "
            f"the same files as {SECURE_DATASET!r}, interleaved with the secure queries; {setup}"
        ),
    )
    secure_row = Row(
        SUITE,
        "accord-secure",
        "count_latency",
        rows_per_node * nodes,
        nodes=nodes,
        epsilon=float(EPSILON),
        median_s=median(sec),
        p95_s=p95(sec),
        extra=split(SECURE_DATASET)
        | {
            "added_p50_ms": added_ms,
            "added_p95_ms": (p95(sec) - p95(plain)) * 1000,
            "ratio_p50": median(sec) / median(plain),
            "added_nodes_cpu_ms": added_cpu_ms,
            "added_cpu_per_node_ms": added_cpu_ms / nodes,  # what one node on its own machine adds
            "target_added_ms": LATENCY_TARGET_MS,
            "target_met": added_ms <= LATENCY_TARGET_MS,
            "federation_start_s": start_s,
        },
        note=(
            f"COUNT(*) on {SECURE_DATASET!r} (secure aggregation, honest_nodes={nodes}); {setup}. "
            "The difference from accord-plain holds: two rounds of calls to every node instead of one "
            "(key shares, then masked shares), each node's fresh X25519 key and key agreement with the "
            f"{nodes - 1} others (HKDF, ChaCha20 masks), the node's check of the {nodes - 1} others' "
            "signed key shares (signature and certificate), the joined record (not waited for on disk), "
            "signing the masked share, the coordinator's check and sum of the signed shares, and the "
            "client's own check of every share (certificate chain, signature, transcript, sum)"
        ),
    )
    return [plain_row, secure_row]


# ---- the suite ---------------------------------------------------------------------------------


def run(cfg: BenchConfig) -> list[Row]:
    started = time.perf_counter()
    rows = accuracy(cfg)
    for r in rows:
        e = r.extra
        print(
            f"   {r.system:18} N={r.nodes:<2} RMSE {r.error:.4f}  central {e['central_rmse']:.4f}  "
            f"ratio {e['ratio_to_central']:.4f} ± {e['ratio_se']:.4f}",
            flush=True,
        )
    print(f"   accuracy: {len(rows)} rows in {time.perf_counter() - started:.1f} s", flush=True)
    path = plot(rows, cfg.out)
    if path is not None:
        print(f"   wrote {path}", flush=True)
    started = time.perf_counter()
    timed = [r for nodes in latency_node_counts(cfg) for r in latency(cfg, nodes)]
    for r in timed:
        assert r.median_s is not None and r.p95_s is not None
        line = (
            f"   {r.system:18} N={r.nodes:<2} p50 {r.median_s * 1000:7.2f} ms  p95 {r.p95_s * 1000:7.2f} ms"
        )
        if "added_p50_ms" in r.extra:
            line += f"  added p50 {r.extra['added_p50_ms']:.2f} ms ({r.extra['ratio_p50']:.2f} x)"
        print(line, flush=True)
    print(f"   latency: {len(timed)} rows in {time.perf_counter() - started:.1f} s", flush=True)
    return rows + timed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="where the plot goes (default bench/results)")
    a = p.parse_args(argv)
    cfg = BenchConfig(quick=a.quick) if a.out is None else BenchConfig(quick=a.quick, out=a.out)
    for r in run(cfg):
        print(json.dumps(asdict(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
