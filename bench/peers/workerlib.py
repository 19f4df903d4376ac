"""What the peer workers share. Standard library only: it runs inside each peer's own venv, where
Accord is not installed (a worker never imports Accord code).

A worker is run as ``<venv>/bin/python bench/peers/<peer>_worker.py PARQUET TASK SPEC EPSILON REPS``
where ``SPEC`` is the JSON of the query (see ``bench.peers_suite.spec``): the Accord SQL, the
aggregate (``count``/``sum``/``mean``), its column, the GROUP BY column and its public keys, the
WHERE conjuncts as ``[column, op, literal]`` and every column's public bounds and categories.

Modes (``--mode``):

* ``timing``: ``REPS`` end-to-end releases from the file (after ``--warmup`` unmeasured ones),
  each one opening the file, building the DP query and releasing it; then ``--loaded-reps``
  releases on data already loaded in memory ("once loaded"). Prints one JSON object.
* ``accuracy``: load once, then ``--releases`` independent releases at ``EPSILON`` on the loaded
  data; prints the released values (the caller knows the truth and computes the error).

A query the peer cannot express prints ``{"unsupported": "<why>"}`` (exit 0); a crash exits
non-zero with the traceback on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Unsupported(Exception):
    """The peer cannot express this query (the reason goes into the row's note)."""


@dataclass
class Peer:
    """One peer's adapter.

    ``open_file(path, spec, eps)`` is what an end-to-end release does with the file before the
    query (scan it, or load it); ``load(path, spec, eps)`` brings the data into memory for the
    "once loaded" timings; ``release(state, spec, eps)`` builds the DP query and releases it,
    returning the released values (a list of numbers, one per group). ``describe(spec, eps)``
    returns facts about the release (mechanism, noise scale, epsilon spent) for the row's extra.
    """

    system: str
    version: str
    open_file: Callable[[str, dict[str, Any], float], Any]
    load: Callable[[str, dict[str, Any], float], Any]
    release: Callable[[Any, dict[str, Any], float], list[float]]
    describe: Callable[[Any, dict[str, Any], float], dict[str, Any]] = lambda state, spec, eps: {}
    notes: list[str] = field(default_factory=list)
    repeat: Callable[[Any, dict[str, Any], float], Callable[[], list[float]]] | None = None
    """Accuracy mode: build the DP query once and return a function releasing it afresh each call
    (independent noise each time). Without it, every release goes through ``release``."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("task")
    p.add_argument("spec", help="JSON query spec")
    p.add_argument("epsilon", type=float)
    p.add_argument("reps", type=int)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--loaded-reps", type=int, default=None, help="once-loaded releases (default REPS)")
    p.add_argument("--mode", choices=("timing", "accuracy"), default="timing")
    p.add_argument("--releases", type=int, default=1000, help="accuracy mode: number of releases")
    return p.parse_args(argv)


def _timed(fn: Callable[[], object], reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(peer: Peer, argv: list[str] | None = None) -> int:
    a = _args(argv)
    spec: dict[str, Any] = json.loads(a.spec)
    eps = a.epsilon
    head = {"system": peer.system, "version": peer.version, "task": a.task, "epsilon": eps}
    try:
        if a.mode == "accuracy":
            state = peer.load(a.path, spec, eps)
            if peer.repeat is not None:
                again = peer.repeat(state, spec, eps)
            else:

                def again() -> list[float]:
                    return peer.release(state, spec, eps)

            values = [again() for _ in range(a.releases)]
            _emit(head | {"values": values, "details": peer.describe(state, spec, eps), "notes": peer.notes})
            return 0
        opened: list[Any] = []

        def end_to_end_release() -> None:
            opened[:] = [peer.open_file(a.path, spec, eps)]
            peer.release(opened[0], spec, eps)

        end_to_end = _timed(end_to_end_release, a.reps, a.warmup)
        load_s: float | None = None
        if peer.load is peer.open_file and opened:
            state = opened[0]  # opening the file loads it: reuse the last end-to-end state
        else:
            t0 = time.perf_counter()
            state = peer.load(a.path, spec, eps)
            load_s = time.perf_counter() - t0
        loaded_reps = a.reps if a.loaded_reps is None else a.loaded_reps
        sample: list[float] = []

        def once() -> None:
            sample[:] = peer.release(state, spec, eps)

        once_loaded = _timed(once, loaded_reps, 1 if loaded_reps else 0)
        _emit(
            head
            | {
                "end_to_end_s": end_to_end,
                "once_loaded_s": once_loaded,
                "load_s": load_s,
                "sample": sample,
                "details": peer.describe(state, spec, eps),
                "notes": peer.notes,
            }
        )
        return 0
    except Unsupported as why:
        _emit(head | {"unsupported": str(why), "notes": peer.notes})
        return 0
    except Exception:
        traceback.print_exc()
        return 1


# ---- helpers for building each peer's query from the spec ----------------------------------


def where_sql(spec: dict[str, Any]) -> str:
    """The spec's WHERE conjuncts as SQL (for peers that take SQL)."""

    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return repr(v)

    return " AND ".join(f"{c} {op} {lit(v)}" for c, op, v in spec.get("where") or [])


def bounds(spec: dict[str, Any], column: str) -> tuple[float, float]:
    col = spec["columns"][column]
    if col.get("lower") is None or col.get("upper") is None:
        raise Unsupported(f"column {column} has no declared bounds")
    return col["lower"], col["upper"]


def numbers(rows: list[Any]) -> list[float]:
    """Released values as plain floats (``None`` stays ``None``)."""
    return [None if v is None else float(v) for v in rows]
