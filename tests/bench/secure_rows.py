"""What the secure-aggregation benchmark must report in quick mode (the quick run of every suite,
:mod:`tests.bench.test_bench_quick` checks it with this, so the suite never rots)."""

from __future__ import annotations

import math
from typing import Any

NODE_COUNTS = {2, 4, 8, 16}


def assert_secure_rows(rows: list[dict[str, Any]]) -> None:
    """What the quick run of suite ``secure`` must report (checked by
    :mod:`tests.bench.test_bench_quick`, which runs every suite once): for every node count, the
    secure and independent RMSE with finite positive ratios to their central references (the
    secure one near 1, the independent one near sqrt(N)), the latency of both datasets on a
    federation of 8 node processes with a finite positive ratio."""
    rows = [r for r in rows if r["suite"] == "secure"]
    assert rows

    def finite_positive(x: object) -> bool:
        return isinstance(x, (int, float)) and math.isfinite(x) and x > 0

    for system in ("accord-secure", "accord-independent"):
        cells = {r["nodes"]: r for r in rows if r["system"] == system and r["task"] == "count"}
        assert set(cells) == NODE_COUNTS, system
        for n, r in cells.items():
            e = r["extra"]
            assert finite_positive(r["error"]) and finite_positive(e["central_rmse"]), r
            assert finite_positive(e["ratio_to_central"]) and finite_positive(e["ratio_se"]), r
            assert e["samples"] > 0 and f"{e['samples']:,}" in r["note"], r
            # loose bounds: quick mode's few thousand releases still put the ratios well inside
            if system == "accord-secure":
                assert 0.8 < e["ratio_to_central"] < 1.25, r
            else:
                assert 0.8 < e["ratio_to_central"] / math.sqrt(n) < 1.25, r

    timed = {r["system"]: r for r in rows if r["task"] == "count_latency"}
    assert set(timed) == {"accord-secure", "accord-plain"}
    for r in timed.values():
        assert r["nodes"] == 8 and finite_positive(r["median_s"]) and finite_positive(r["p95_s"]), r
        assert r["extra"]["queries"] > 0 and finite_positive(r["extra"]["nodes_cpu_s"]), r
        assert "8 node processes" in r["note"], r  # real `accord node serve` processes, not threads
    secure = timed["accord-secure"]["extra"]
    assert finite_positive(secure["ratio_p50"]) and math.isfinite(secure["added_p50_ms"])
    assert "target_added_ms" in secure and "two rounds" in timed["accord-secure"]["note"]
