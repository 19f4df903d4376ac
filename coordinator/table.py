"""Present a :class:`accord.query.release.FederatedRelease` to analysts: Arrow, CSV, JSON and text.

Every form has the same columns: each group column, then for each aggregate ``<alias>``,
``<alias>_ci_low``, ``<alias>_ci_high`` and ``<alias>_noise_scale``, and a final ``nodes`` column
(the contributing nodes, comma-joined; the same on every row). The intervals are 95% intervals.
Integer-valued numbers (counts, sums of integer columns) are integers in every form.

``noise_scale`` is the Laplace scale ``b`` of the noise in the number: for one node's count or sum
the ``b`` it drew with; for a count or sum combined over nodes ``sqrt(Σ b_i²)`` (see
:mod:`accord.coordinator.combine`); for a secure-aggregated count or sum the standard deviation
``sigma sqrt(n)`` of the sum of the ``n`` nodes' discrete Gaussian shares; for a mean 0, because
a mean adds no noise of its own: its uncertainty comes from its noisy sum and count, whose scales
the table's footer shows (and JSON's ``noise`` member).

Under an agreement with a minimum group size a ``suppressed`` column follows the aggregates: a
group too small to release is marked ``true`` there, with every aggregate column empty (null in
Arrow and JSON, an empty field in CSV, ``suppressed`` in the table). It is never left out.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

import pyarrow as pa

from accord.errors import printable
from accord.query.model import ANSWER_COLUMNS, ESTIMATE_SUFFIXES
from accord.query.model import Literal as Value
from accord.query.release import Estimate, FederatedRelease, Mechanism

Format = Literal["table", "csv", "json"]

SUPPRESSED_COLUMN, NODES_COLUMN = ANSWER_COLUMNS  # the query model keeps aliases from clashing
_SUFFIXES = ("", *ESTIMATE_SUFFIXES)


def column_names(release: FederatedRelease) -> list[str]:
    """The flat output columns, in order (the same for Arrow, CSV and JSON rows)."""
    names: list[str] = [c.name for c in release.columns if c.is_group]
    for c in release.columns:
        if not c.is_group:
            names.extend(c.name + s for s in _SUFFIXES)
    if release.min_group_size > 0:
        names.append(SUPPRESSED_COLUMN)
    names.append(NODES_COLUMN)
    return names


_INTEGRAL = (Mechanism.DISCRETE_LAPLACE, Mechanism.DISCRETE_GAUSSIAN)


def _integral(e: Estimate) -> bool:
    return e.mechanism in _INTEGRAL and float(e.value).is_integer()


def _as_number(x: float, integral: bool) -> int | float:
    return round(x) if integral else x


def _records(release: FederatedRelease) -> list[dict[str, Any]]:
    group_cols = [c.name for c in release.columns if c.is_group]
    agg_cols = [c.name for c in release.columns if not c.is_group]
    nodes = ",".join(release.contributing_nodes)
    out: list[dict[str, Any]] = []
    for row in release.rows:
        rec: dict[str, Any] = dict(zip(group_cols, row.group, strict=True))
        if row.suppressed:
            rec.update({name + s: None for name in agg_cols for s in _SUFFIXES})
        for name, cell in zip(agg_cols, row.cells, strict=not row.suppressed):
            e = cell.estimate
            integral = _integral(e)
            rec[name] = _as_number(e.value, integral)
            rec[name + "_ci_low"] = _as_number(e.ci_low, integral)
            rec[name + "_ci_high"] = _as_number(e.ci_high, integral)
            rec[name + "_noise_scale"] = e.noise_scale
        if release.min_group_size > 0:
            rec[SUPPRESSED_COLUMN] = row.suppressed
        rec[NODES_COLUMN] = nodes
        out.append(rec)
    return out


def _scales(estimates: list[Estimate]) -> str:
    shown = [f"{v:.3g}" for v in sorted({e.noise_scale for e in estimates})]
    if not shown:
        return "unknown"
    return shown[0] if len(shown) == 1 else f"{shown[0]} to {shown[-1]}"


def noise_summary(release: FederatedRelease) -> dict[str, dict[str, str]]:
    """Per aggregate, the Laplace scale of its noise (for a mean: of its sum and of its count),
    as text; the same for every group unless nodes differ."""
    out: dict[str, dict[str, str]] = {}
    aggregates = [c.name for c in release.columns if not c.is_group]
    for i, name in enumerate(aggregates):
        cells = [row.cells[i] for row in release.rows if not row.suppressed]
        if not cells:
            continue
        if cells[0].estimate.mechanism is Mechanism.RATIO:
            sums = [c.sum for c in cells if c.sum is not None]
            counts = [c.count for c in cells if c.count is not None]
            out[name] = {"sum": _scales(sums), "count": _scales(counts)}
        else:
            out[name] = {"scale": _scales([c.estimate for c in cells])}
    return out


def _noise_line(release: FederatedRelease) -> str:
    parts = []
    for name, scale in noise_summary(release).items():
        if "scale" in scale:
            parts.append(f"{name} {scale['scale']}")
        else:
            parts.append(f"{name} = sum (scale {scale['sum']}) / count (scale {scale['count']})")
    if release.aggregation == "secure":
        return "noise (standard deviation of the combined discrete Gaussian): " + "; ".join(parts)
    combined = " combined over the nodes" if len(release.contributing_nodes) > 1 else ""
    return f"noise scale (Laplace b{combined}): " + "; ".join(parts)


def _mode_line(release: FederatedRelease) -> str:
    """How the answer was produced, and the guarantee each person's data had in it."""
    if release.aggregation == "secure":
        return (
            f"secure aggregation: the coordinator saw only the sum; one distributed noise; "
            f"(epsilon {release.epsilon.display()}, delta {printable(release.delta)})-DP"
        )
    return f"independent: each node added its own noise; epsilon {release.epsilon.display()} at each node"


def _group_type(values: list[Value]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _group_array(values: list[Value]) -> Any:
    typ = _group_type(values)
    if typ == pa.string():
        return pa.array([None if v is None else str(v) for v in values], type=typ)
    if typ == pa.float64():
        return pa.array([None if v is None else float(v) for v in values], type=typ)
    return pa.array(values, type=typ)


def metadata(release: FederatedRelease) -> dict[bytes, bytes]:
    """The Arrow schema metadata: query id, dataset, partial flag, missing nodes (JSON), epsilon."""
    return {
        b"accord.query_id": release.query_id.encode(),
        b"accord.dataset": release.dataset.encode(),
        b"accord.partial": b"true" if release.partial else b"false",
        b"accord.missing": json.dumps(dict(sorted(release.missing.items()))).encode(),
        b"accord.epsilon": str(release.epsilon).encode(),
        b"accord.agreement": release.agreement.encode(),
        b"accord.min_group_size": str(release.min_group_size).encode(),
        b"accord.suppress_below": str(release.suppress_below).encode(),
        b"accord.aggregation": release.aggregation.encode(),
        b"accord.delta": release.delta.encode(),
    }


def to_arrow(release: FederatedRelease) -> Any:
    """A ``pyarrow.Table``: group columns typed from their values, float64 aggregates, ``nodes``."""
    records = _records(release)
    arrays: list[Any] = []
    names = column_names(release)
    for name in names:
        values = [r[name] for r in records]
        if name == NODES_COLUMN:
            arrays.append(pa.array(values, type=pa.string()))
        elif name == SUPPRESSED_COLUMN:
            arrays.append(pa.array(values, type=pa.bool_()))
        elif any(name == c.name for c in release.columns if c.is_group):
            arrays.append(_group_array(values))
        elif all(isinstance(v, int) for v in values if v is not None) and not name.endswith("_noise_scale"):
            arrays.append(pa.array(values, type=pa.int64()))
        else:
            arrays.append(pa.array([None if v is None else float(v) for v in values], type=pa.float64()))
    fields = [pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata(release)))


# ---- text ------------------------------------------------------------------------------------


def _number(value: float, mechanism: Mechanism) -> str:
    if mechanism in _INTEGRAL and float(value).is_integer():
        return str(round(value))
    return f"{value:.2f}"


def _missing_line(release: FederatedRelease) -> str:
    parts = [f"{printable(node)} ({printable(reason)})" for node, reason in sorted(release.missing.items())]
    return "PARTIAL: missing " + ", ".join(parts)


def _text(release: FederatedRelease) -> str:
    """The table for people. Every text that came from the network (category values, names,
    reasons) is escaped (:func:`~accord.errors.printable`): a newline, carriage return or escape
    sequence in it can neither break the table nor drive the analyst's terminal."""
    group_cols = [printable(c.name) for c in release.columns if c.is_group]
    agg_cols = [printable(c.name) for c in release.columns if not c.is_group]
    header = group_cols + [h for a in agg_cols for h in (a, f"{a} 95% CI")]
    body: list[list[str]] = []
    numeric = [False] * len(group_cols) + [True] * (2 * len(agg_cols))
    for row in release.rows:
        line = ["" if v is None else printable(str(v)) for v in row.group]
        if row.suppressed:
            line += [c for _ in agg_cols for c in ("suppressed", "")]
        for cell in row.cells:
            e = cell.estimate
            line.append(_number(e.value, e.mechanism))
            line.append(f"[{_number(e.ci_low, e.mechanism)}, {_number(e.ci_high, e.mechanism)}]")
        body.append(line)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(r) for r in body)
    if not body:
        lines.append("(no rows)")
    if body and any(not r.suppressed for r in release.rows):
        lines.append(_noise_line(release))
    if release.min_group_size > 0:
        hidden = sum(r.suppressed for r in release.rows)
        rows_note = (
            f"; a noisy count below {release.suppress_below} rows"
            if release.suppress_below > release.min_group_size
            else ""
        )
        lines.append(
            f"suppressed: {hidden} group(s) of fewer than {release.min_group_size} people{rows_note} "
            f"(agreement {printable(release.agreement)})"
        )
    elif release.agreement:
        lines.append(f"agreement: {printable(release.agreement)}")
    lines.append(f"nodes: {printable(', '.join(release.contributing_nodes))}")
    lines.append(_mode_line(release))
    if release.partial:
        lines.append(_missing_line(release))
    return "\n".join(lines) + "\n"


def _csv(release: FederatedRelease) -> str:
    """CSV for the terminal and for files: text cells are escaped like the table's (a category
    value's newline is written ``\\n``); Python callers get the raw values from :func:`to_arrow`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = column_names(release)
    writer.writerow([printable(n) for n in names])
    for rec in _records(release):
        writer.writerow(["" if rec[n] is None else _csv_cell(rec[n]) for n in names])
    return buf.getvalue()


def _csv_cell(value: object) -> object:
    return printable(value) if isinstance(value, str) else value


def _json(release: FederatedRelease) -> str:
    doc = {
        "query_id": release.query_id,
        "dataset": release.dataset,
        "epsilon": str(release.epsilon),
        "agreement": release.agreement,
        "min_group_size": release.min_group_size,
        "suppress_below": release.suppress_below,
        "partial": release.partial,
        "aggregation": release.aggregation,
        "delta": release.delta,
        "contributing_nodes": list(release.contributing_nodes),
        "missing": dict(sorted(release.missing.items())),
        "columns": column_names(release),
        "noise": noise_summary(release),
        "rows": _records(release),
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def format_release(release: FederatedRelease, fmt: Format) -> str:
    """The release as text for the command line: ``table`` (aligned, for people), ``csv``, ``json``."""
    if fmt == "table":
        return _text(release)
    if fmt == "csv":
        return _csv(release)
    if fmt == "json":
        return _json(release)
    raise ValueError(f"unknown format {fmt!r}; use table, csv or json")


__all__ = [
    "NODES_COLUMN",
    "SUPPRESSED_COLUMN",
    "column_names",
    "format_release",
    "metadata",
    "noise_summary",
    "to_arrow",
]
