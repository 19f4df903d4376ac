"""Peer worker: OpenDP's Polars context (run with bench/.venvs/opendp-polars; see workerlib).

The query is built the way OpenDP's Polars documentation does it: a ``dp.Context.compositor``
over a ``LazyFrame`` with the privacy unit, the privacy loss and public margins, then
``context.query()...release().collect()``.

Same privacy setup as Accord's node: pure epsilon-DP (``loss_of(epsilon=...)``), one contribution
per privacy unit under add/remove (``unit_of(contributions=1)``: OpenDP's default symmetric
distance, the same neighbour notion as Accord's), sums and means clamped to the declared bounds,
counts and integer sums noised with OpenDP's integer (discrete) Laplace, and the 12 regions given
as public keys (``with_keys``) so no budget or delta is spent discovering groups. The mean is a
noisy sum over a noisy count with epsilon split evenly, as Accord does.

End to end = ``pl.scan_parquet`` + context + query + release. Once loaded = the data already
collected into memory (``pl.read_parquet(...).lazy()``), then context + query + release. Once
loaded is *slower* than from the file: OpenDP serializes the ``LazyFrame`` plan to hand it to its
Rust core, and an in-memory frame's plan carries the data (about 50 MB at 1M rows, serialized
several times per release), while a scan's plan is the file path.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import opendp.prelude as dp
import polars as pl
from workerlib import Peer, Unsupported, bounds, main, numbers

dp.enable_features("contrib")

MAX_LENGTH = 10**9
"""A public bound on the number of rows (OpenDP needs one to rule out overflow in integer sums;
it does not change the noise scale)."""

_OPS = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}


def _context(lf: pl.LazyFrame, spec: dict[str, Any], eps: float) -> Any:
    return dp.Context.compositor(
        data=lf,
        privacy_unit=dp.unit_of(contributions=spec.get("max_rows_per_person", 1)),
        privacy_loss=dp.loss_of(epsilon=eps),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=(), max_length=MAX_LENGTH)],
    )


def _query(context: Any, spec: dict[str, Any]) -> Any:
    q = context.query()
    for column, op, value in spec.get("where") or []:
        if op not in _OPS:
            raise Unsupported(f"filter operator {op!r}")
        q = q.filter(_OPS[op](pl.col(column), value))
    agg, column = spec["agg"], spec.get("column")
    if agg == "count":
        expr = dp.len(signed=True)  # no clamping at zero, like Accord (and OpenDP's future default)
    elif agg in ("sum", "mean"):
        lo, hi = bounds(spec, column)
        ints = spec["columns"][column]["type"] == "integer"
        b = (int(lo), int(hi)) if ints else (float(lo), float(hi))
        c = pl.col(column).fill_null(0)
        expr = c.dp.sum(b) if agg == "sum" else c.dp.mean(b)
    else:
        raise Unsupported(f"aggregate {agg}")
    group = spec.get("group_by")
    if group is None:
        return q.select(expr.alias("value"))
    keys = pl.LazyFrame({group: spec["keys"]})
    return q.group_by(group).agg(expr.alias("value")).with_keys(keys)


def _values(frame: pl.DataFrame, spec: dict[str, Any]) -> list[float]:
    group = spec.get("group_by")
    if group is None:
        return numbers([frame["value"][0]])
    got = dict(zip(frame[group].to_list(), frame["value"].to_list(), strict=True))
    return numbers([got.get(k) for k in spec["keys"]])


def open_file(path: str, spec: dict[str, Any], eps: float) -> pl.LazyFrame:
    return pl.scan_parquet(path)


def load(path: str, spec: dict[str, Any], eps: float) -> pl.LazyFrame:
    return pl.read_parquet(path).lazy()


def release(lf: pl.LazyFrame, spec: dict[str, Any], eps: float) -> list[float]:
    return _values(_query(_context(lf, spec, eps), spec).release().collect(), spec)


def repeat(lf: pl.LazyFrame, spec: dict[str, Any], eps: float) -> Callable[[], list[float]]:
    """Resolve the query into an OpenDP measurement once; each call is a fresh release of it (a
    context's ``release()`` costs about a second of fixed overhead, too slow for thousands)."""
    measurement = _query(_context(lf, spec, eps), spec).resolve()
    if measurement.map(1) > eps:
        raise RuntimeError("the resolved measurement spends more than epsilon")
    return lambda: _values(measurement(lf).collect(), spec)


def describe(lf: pl.LazyFrame, spec: dict[str, Any], eps: float) -> dict[str, Any]:
    summary = _query(_context(lf, spec, eps), spec).summarize()
    return {
        "mechanisms": [
            {"aggregate": a, "distribution": d, "scale": s}
            for a, d, s in zip(summary["aggregate"], summary["distribution"], summary["scale"], strict=True)
        ]
    }


PEER = Peer(
    "opendp-polars",
    f"opendp {version('opendp')}, polars {pl.__version__}",
    open_file,
    load,
    release,
    describe,
    repeat=repeat,
    notes=[
        "privacy unit = one row (unit_of(contributions=1)); the file has one row per person, so this "
        "is Accord's person-level guarantee, without per-person truncation (Accord also skips it "
        "after its load-time check)",
        "pure epsilon-DP, integer Laplace; regions as public keys (with_keys), no delta spent",
        "once loaded is slower than from the file: OpenDP serializes the in-memory frame's plan, data "
        "included, to hand it to its Rust core",
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(PEER))
