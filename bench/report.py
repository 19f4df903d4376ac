"""Turn benchmark rows into the Markdown summary (with the targets) and the PNG plots."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Row

BOUNDED = "_bounded"
ACCURACY_SLACK = 1.05
"""Accord's measured error may exceed OpenDP's by 5% before the target counts as missed: both
are averages of a finite number of noisy releases, so equal mechanisms differ by a few percent."""


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def _fmt(x: float | None, unit: str = "s") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if unit == "s":
        return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:.3g}"


def _by(rows: Iterable[Row], suite: str) -> list[Row]:
    return [r for r in rows if r.suite == suite and r.system != "-"]


def _base(task: str) -> str:
    return task[: -len(BOUNDED)] if task.endswith(BOUNDED) else task


def local_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    local = _by(rows, "local")
    duck = {(r.rows, r.task): r for r in local if r.system == "duckdb" and r.median_s}
    for r in local:
        if r.system != "accord" or not r.median_s:
            continue
        ref = duck.get((r.rows, r.task)) or duck.get((r.rows, _base(r.task)))
        ratio = r.extra.get("ratio_vs_duckdb") or (
            r.median_s / ref.median_s if ref and ref.median_s else None
        )
        limit = 3.0 if r.task.endswith(BOUNDED) else 1.3
        out.append(
            Verdict(
                f"node-local {r.task} at {r.rows:,} rows ≤ {limit} x DuckDB",
                f"{ratio:.2f} x" if ratio else "-",
                None if ratio is None else ratio <= limit,
            )
        )
    return out


def peer_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    ours = {(r.rows, r.task): r for r in _by(rows, "local") if r.system == "accord" and r.median_s}
    peers = [r for r in _by(rows, "local") if r.system not in ("accord", "duckdb") and r.median_s]
    for (n, task), mine in sorted(ours.items()):
        if task.endswith(BOUNDED):
            continue
        same = [p for p in peers if p.rows == n and p.task == task]
        if not same:
            continue
        fastest = min(same, key=lambda p: p.median_s or math.inf)
        assert fastest.median_s is not None and mine.median_s is not None
        speedup = fastest.median_s / mine.median_s
        out.append(
            Verdict(
                f"{task} at {n:,} rows ≥ 5 x faster than the fastest peer ({fastest.system})",
                f"{speedup:.1f} x",
                speedup >= 5,
            )
        )
    return out


def federated_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    fed = [r for r in _by(rows, "federated") if r.median_s]
    for r in fed:
        if r.nodes == 8 and "overhead_p50_s" in r.extra:
            o = r.extra["overhead_p50_s"]
            out.append(
                Verdict(f"coordination overhead p50 ≤ 10 ms at 8 nodes ({r.task})", _fmt(o), o <= 0.010)
            )
    by_task: dict[str, dict[int, float]] = {}
    for r in fed:
        assert r.median_s is not None
        by_task.setdefault(r.task, {})[r.nodes] = r.median_s
    for task, lat in sorted(by_task.items()):
        lo, hi = min(lat), max(lat)
        if hi > lo:
            growth = lat[hi] / lat[lo]
            out.append(
                Verdict(
                    f"{task}: latency grows far slower than node count ({lo}→{hi} nodes is {hi / lo:.0f} x)",
                    f"{growth:.2f} x",
                    growth <= max(2.0, (hi / lo) / 4),
                )
            )
    for r in _by(rows, "throughput"):
        ratio = r.extra.get("ratio_vs_memory_state")
        if ratio is not None:
            out.append(
                Verdict(
                    f"durable node state costs ≤ 10% of federated throughput at {r.nodes} nodes",
                    f"{ratio:.2f} x the in-memory state's q/s",
                    ratio >= 0.9,
                )
            )
        if "qps" in r.extra and r.system == "accord":
            out.append(
                Verdict(
                    f"≥ 200 small federated queries/s at {r.nodes} nodes ({r.task})",
                    f"{r.extra['qps']:.0f} q/s",
                    r.extra["qps"] >= 200,
                )
            )
    return out


def answer_path_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    for r in _by(rows, "answer_path"):
        target = r.extra.get("target_ms")
        if target is None:
            continue
        added = r.extra["overhead_ms"]
        out.append(
            Verdict(
                f"signature checks + durable state add ≤ {target} ms to a node's {r.task} answer (p50)",
                f"{added:.2f} ms (verification {r.extra['verify_ms']:.2f}, state {r.extra['state_ms']:.2f}, "
                f"audit log {r.extra.get('audit_ms', 0.0):.2f})",
                added <= target,
            )
        )
        if "audit_ms" in r.extra:
            audit = r.extra["audit_ms"]
            out.append(
                Verdict(
                    f"the audit-log entry adds ≤ {r.extra['audit_target_ms']} ms to a {r.task} answer (p50)",
                    f"{audit:.2f} ms",
                    audit <= r.extra["audit_target_ms"],
                )
            )
    for r in _by(rows, "audit"):
        if r.system == "accord-verify":
            out.append(
                Verdict(
                    f"verifying a {r.rows:,}-entry audit log offline takes < {r.extra['target_s']:.0f} s",
                    f"{r.median_s:.1f} s ({r.extra['ratio']:.1f}x hashing the entries alone)",
                    (r.median_s or 0) < r.extra["target_s"],
                )
            )
    return out


def governance_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    for r in _by(rows, "governance"):
        if "target_ms" in r.extra:
            out.append(
                Verdict(
                    f"governance checks add ≤ {r.extra['target_ms']} ms to a node's {r.task} answer (p50)",
                    f"{r.extra['overhead_ms']:.2f} ms",
                    r.extra["overhead_ms"] <= r.extra["target_ms"],
                )
            )
        elif "target_ratio_of_answer" in r.extra:
            out.append(
                Verdict(
                    "the caller gate and per-analyst limits add "
                    f"≤ {r.extra['target_ratio_of_answer']:.0%} to a COUNT(*) answer",
                    f"{(r.median_s or 0) * 1e6:.1f} µs a call, "
                    f"{r.extra['ratio_of_answer']:.2%} of the answer",
                    r.extra["ratio_of_answer"] <= r.extra["target_ratio_of_answer"],
                )
            )
        elif "target_ratio" in r.extra:
            out.append(
                Verdict(
                    f"{r.task} with 10% opted out, {r.rows:,} rows: within {r.extra['target_ratio']} x "
                    "DuckDB on the same people",
                    f"{r.extra['ratio_vs_duckdb']:.2f} x ({r.extra['ratio_vs_plain_all']:.2f} x the plain "
                    "aggregate over everyone)",
                    r.extra["ratio_vs_duckdb"] <= r.extra["target_ratio"],
                )
            )
    return out


def timing_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    for r in _by(rows, "timing"):
        if "budget_s" not in r.extra:
            continue
        budget, fastest, overruns = r.extra["budget_s"], r.extra["min_padded_s"], r.extra["overruns"]
        out.append(
            Verdict(
                f"padded {r.task} answers never leave before their {budget:g} s budget, none overruns",
                f"fastest {fastest:.4f} s, {overruns} overrun(s), p50 {r.extra['ratio']:.3g} x unpadded",
                fastest >= budget and overruns == 0,
            )
        )
    return out


def memory_verdicts(rows: list[Row]) -> list[Verdict]:
    mem = _by(rows, "memory")
    out: list[Verdict] = []
    duck = {(r.rows, _base(r.task)): r for r in mem if r.system == "duckdb" and r.peak_rss_mb}
    for r in mem:
        ref = duck.get((r.rows, _base(r.task)))
        if r.system != "accord" or not r.peak_rss_mb or ref is None or ref.peak_rss_mb is None:
            continue
        limit = 1.5 * ref.peak_rss_mb + 200
        out.append(
            Verdict(
                f"node peak memory at {r.rows:,} rows ≤ 1.5 x DuckDB ({ref.peak_rss_mb:.0f} MB) + 200 MB",
                f"{r.peak_rss_mb:.0f} MB (limit {limit:.0f} MB)",
                r.peak_rss_mb <= limit,
            )
        )
    return out


def accuracy_verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    for r in _by(rows, "accuracy"):
        if r.system != "accord" or r.error is None:
            continue
        where = f"{r.task} at ε={r.epsilon}"
        ratio = r.extra.get("ratio_to_prediction")
        if ratio is not None:
            out.append(
                Verdict(
                    f"{where}: error within 10% of the stated scale's prediction",
                    f"{ratio:.3f}",
                    0.9 <= ratio <= 1.1,
                )
            )
        theirs = r.extra.get("opendp_error")
        if theirs:
            out.append(
                Verdict(
                    f"{where}: error no worse than OpenDP's",
                    f"{r.error:.4g} vs {theirs:.4g}",
                    r.error <= theirs * ACCURACY_SLACK,
                )
            )
    return out


def secure_verdicts(rows: list[Row]) -> list[Verdict]:
    """Secure aggregation: its error against a central curator's (same query and guarantee), and the
    latency it adds to a query at each node count measured."""
    out: list[Verdict] = []
    for r in _by(rows, "secure"):
        ratio = r.extra.get("ratio_to_central")
        if r.system == "accord-secure" and r.task == "count" and ratio is not None:
            out.append(
                Verdict(
                    f"secure aggregation at {r.nodes} nodes: RMSE at most 1.1x a central curator's",
                    f"{ratio:.3f}x",
                    ratio <= 1.1,
                )
            )
        added = r.extra.get("added_p50_ms")
        if r.system == "accord-secure" and r.task == "count_latency" and added is not None:
            cpu = r.extra.get("added_cpu_per_node_ms", float("nan"))
            out.append(
                Verdict(
                    f"secure aggregation at {r.nodes} nodes: adds at most 5 ms p50",
                    f"+{added:.1f} ms (+{cpu:.1f} ms CPU per node)",
                    added <= 5.0 if r.nodes == 8 else None,
                )
            )
    return out


def verdicts(rows: list[Row]) -> list[Verdict]:
    return [
        *local_verdicts(rows),
        *answer_path_verdicts(rows),
        *governance_verdicts(rows),
        *timing_verdicts(rows),
        *peer_verdicts(rows),
        *federated_verdicts(rows),
        *memory_verdicts(rows),
        *accuracy_verdicts(rows),
        *secure_verdicts(rows),
    ]


_COLUMNS = (
    "system",
    "task",
    "rows",
    "nodes",
    "epsilon",
    "median",
    "p95",
    "peak RSS",
    "error",
    "extra",
    "note",
)


def _extra(extra: dict[str, Any]) -> str:
    parts = []
    for k, v in sorted(extra.items()):
        if isinstance(v, float):
            v = _fmt(v) if k.endswith("_s") else f"{v:.3g}"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _row_cells(r: Row) -> list[str]:
    return [
        r.system,
        r.task,
        f"{r.rows:,}",
        str(r.nodes),
        "-" if r.epsilon is None else f"{r.epsilon:g}",
        _fmt(r.median_s),
        _fmt(r.p95_s),
        "-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f} MB",
        "-" if r.error is None else f"{r.error:.4g}",
        _extra(r.extra),
        r.note.replace("|", "/").replace("\n", " "),
    ]


def _table(header: Iterable[str], body: Iterable[list[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    lines = [
        "# Accord benchmark results",
        "",
        f"Measured {meta.get('date', '')} on {meta.get('platform')} ({meta.get('cpus')} CPUs, "
        f"{meta.get('processor')}), Python {meta.get('python')}. Medians over repetitions; every "
        "reference was measured in the same run on the same files.",
    ]
    if meta.get("quick"):
        lines += [
            "",
            "**Quick mode**: small data, for checking that every suite runs; the ratios mean little.",
        ]
    vs = verdicts(rows)
    lines += ["", "## Targets", ""]
    if vs:
        mark = {True: "met", False: "**missed**", None: "not measured"}
        lines += _table(("target", "measured", ""), ([v.target, v.measured, mark[v.met]] for v in vs))
    else:
        lines.append("No target could be evaluated from this run.")
    suites: list[str] = []
    for r in rows:
        if r.suite not in suites:
            suites.append(r.suite)
    for suite in suites:
        lines += ["", f"## {suite}", ""]
        lines += _table(_COLUMNS, (_row_cells(r) for r in rows if r.suite == suite))
    return "\n".join(lines) + "\n"


def plots(rows: list[Row], out: Path) -> list[Path]:
    """latency_vs_nodes.png and time_vs_rows.png (only those with data to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    fed = [r for r in _by(rows, "federated") if r.median_s]
    if fed:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for task in sorted({r.task for r in fed}):
            pts = sorted((r.nodes, r.median_s, r.p95_s) for r in fed if r.task == task)
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] * 1000 for p in pts], marker="o", label=f"{task} p50")
            ax.plot(xs, [(p[2] or p[1]) * 1000 for p in pts], linestyle="--", alpha=0.6, label=f"{task} p95")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nodes")
        ax.set_ylabel("end-to-end latency (ms)")
        ax.set_title("Federated query latency against node count")
        ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
        path = out / "latency_vs_nodes.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    local = [r for r in _by(rows, "local") if r.median_s and not r.task.endswith(BOUNDED)]
    tasks = sorted({r.task for r in local})
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.8), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            for system in sorted({r.system for r in local}):
                pts = sorted((r.rows, r.median_s) for r in local if r.task == task and r.system == system)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(task)
            ax.set_xlabel("rows")
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("seconds (median)")
        axes[0][-1].legend(fontsize="small")
        fig.suptitle("Time against rows, per system")
        fig.tight_layout()
        path = out / "time_vs_rows.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
