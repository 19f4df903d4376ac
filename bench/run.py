"""Run Accord's benchmark suites in one process and write the report.

    python -m bench.run            # make bench: 1M and 10M rows, 1..16 nodes (tens of minutes)
    python -m bench.run --quick    # make bench-quick: every suite on small data (under 2 minutes)
    python -m bench.run --suites local,accuracy

Writes ``summary.json`` (a list of rows, see :class:`bench.common.Row`), ``machine.json``,
``summary.md`` (tables and the targets, met or missed) and PNG plots into ``bench/results``
(``--out`` elsewhere). A suite that fails is reported as a row with a note and makes the run exit
non-zero: a benchmark that silently drops a measurement would lie.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from pathlib import Path

from bench.common import RESULTS, BenchConfig, Row, machine, write_json

SUITES: dict[str, str] = {
    "local": "bench.local",
    "answer_path": "bench.answer_path",
    "audit": "bench.audit",
    "governance": "bench.governance",
    "timing": "bench.timing",
    "peers": "bench.peers_suite",
    "memory": "bench.memory",
    "accuracy": "bench.accuracy",
    "secure": "bench.secure",
    "federated": "bench.federated",
    "throughput": "bench.throughput",
}
"""Suite name → module with ``run(cfg) -> list[Row]``, in the order they run."""


def run_suites(cfg: BenchConfig, names: list[str]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(SUITES[name])
            got = list(module.run(cfg))
        except Exception as err:  # a broken suite is reported, never hidden
            traceback.print_exc()
            failed.append(name)
            rows.append(Row(name, "-", "-", 0, note=f"suite failed: {type(err).__name__}: {err}"))
            continue
        rows.extend(got)
        print(f"   {len(got)} row(s) in {time.perf_counter() - started:.1f} s", flush=True)
    return rows, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data: exercise every suite fast")
    parser.add_argument(
        "--suites", default=",".join(SUITES), help="comma-separated subset of: " + ", ".join(SUITES)
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.suites.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cfg = BenchConfig(quick=args.quick, out=args.out)
    cfg.work.mkdir(parents=True, exist_ok=True)
    rows, failed = run_suites(cfg, names)

    from bench import report  # matplotlib is imported only once there is something to draw

    meta = machine() | {"quick": args.quick, "suites": names, "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(rows, args.out / "summary.json")
    write_json(meta, args.out / "machine.json")
    markdown = report.markdown(rows, meta)
    (args.out / "summary.md").write_text(markdown)
    plots = report.plots(rows, args.out)
    print(markdown)
    print("wrote", ", ".join(str(p) for p in [args.out / "summary.json", args.out / "summary.md", *plots]))
    if failed:
        print(f"FAILED suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
