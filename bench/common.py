"""What every benchmark suite shares: the result row, the run configuration, timing helpers.

A suite is a module with ``run(cfg: BenchConfig) -> list[Row]``. Times are wall-clock medians over
``cfg.reps`` repetitions after ``cfg.warmup`` unmeasured ones; the reference (plain DuckDB, or a
peer) is always measured in the same run on the same file, so reports compare ratios, not absolute
times from different days.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENVS = BENCH / ".venvs"


@dataclass
class Row:
    """One measured (suite, system, task) combination: a row of ``summary.json``."""

    suite: str  # "local", "federated", "throughput", "memory", "accuracy"
    system: str  # "accord", "duckdb", "opendp-polars", "smartnoise-sql", "pyqrlew", ...
    task: str  # "count", "sum", "mean", "groupby12", "filtered_count", ...
    rows: int
    nodes: int = 1
    epsilon: float | None = None
    median_s: float | None = None
    p95_s: float | None = None
    peak_rss_mb: float | None = None
    error: float | None = None  # accuracy: measured mean absolute error
    extra: dict[str, Any] = field(default_factory=dict)  # suite-specific numbers (qps, ratios, ...)
    note: str = ""  # why a number is missing (a peer that could not be installed, ...)


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    out: Path = RESULTS
    work: Path = BENCH / "data"  # generated data files (git-ignored)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (20_000,) if self.quick else (1_000_000, 10_000_000)

    @property
    def reps(self) -> int:
        return 3 if self.quick else 7

    @property
    def warmup(self) -> int:
        return 1

    @property
    def node_counts(self) -> tuple[int, ...]:
        return (1, 2) if self.quick else (1, 2, 4, 8, 16)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    """The 95th percentile (nearest rank; the maximum for fewer than 20 samples)."""
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def machine() -> dict[str, Any]:
    """What the numbers were measured on (printed beside every table)."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` (rows become dicts) atomically: a reader never sees half a file."""
    if isinstance(data, list):
        data = [asdict(r) if isinstance(r, Row) else r for r in data]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
