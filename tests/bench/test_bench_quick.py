"""`make bench-quick` inside the test suite, so the benchmark programs never rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.secure_rows import assert_secure_rows

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {
    "suite",
    "system",
    "task",
    "rows",
    "nodes",
    "epsilon",
    "median_s",
    "p95_s",
    "peak_rss_mb",
    "error",
}
PEERS = {"opendp-polars", "smartnoise-sql", "pyqrlew"}


@pytest.mark.timeout(900)
def test_every_suite_runs_on_small_data_and_writes_the_report(tmp_path: Path) -> None:
    """Property: the quick benchmark runs every suite to completion (exit 0), writes summary.json
    as a list of rows with the documented keys, the Markdown report with the targets and both
    plots, and reports every peer (measured, or with a note saying why not; never dropped)."""
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((out / "summary.json").read_text())
    assert isinstance(rows, list) and rows
    for row in rows:
        assert row.keys() >= REQUIRED, row
    suites = {r["suite"] for r in rows}
    assert {
        "local",
        "answer_path",
        "governance",
        "memory",
        "accuracy",
        "secure",
        "federated",
        "throughput",
    } <= suites
    assert_secure_rows(rows)
    assert (out / "secure_error_vs_nodes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    measured = {(r["suite"], r["system"]) for r in rows if r["median_s"] is not None}
    assert ("local", "accord") in measured and ("local", "duckdb") in measured
    assert ("federated", "accord") in measured
    for variant in ("reference", "verified", "durable"):
        assert ("answer_path", f"accord-{variant}") in measured
    assert ("throughput", "accord-memory-state") in measured
    for peer in PEERS:
        mine = [r for r in rows if r["system"] == peer]
        assert mine, f"{peer} missing from the report"
        assert all(r["median_s"] is not None or r["note"] for r in mine), mine
    assert any(r["peak_rss_mb"] for r in rows if r["suite"] == "memory")
    assert any(r["error"] is not None for r in rows if r["suite"] == "accuracy")
    text = (out / "summary.md").read_text()
    assert "## Targets" in text
    assert "durable state add" in text and "durable node state costs" in text
    for png in ("latency_vs_nodes.png", "time_vs_rows.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
