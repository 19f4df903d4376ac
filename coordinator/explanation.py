"""A query's preview as an analyst reads it (``accord query --explain``): what it would cost at
each node, what would be left, and how precise each number would be."""

from __future__ import annotations

import json
from typing import Any

from accord.errors import printable
from accord.query.preview import AggregatePreview, FederatedExplanation, NoisePreview
from accord.query.release import Mechanism

__all__ = ["format_explanation"]


def _width(n: NoisePreview) -> str:
    return str(round(n.half_width)) if n.mechanism is Mechanism.DISCRETE_LAPLACE else f"{n.half_width:.4g}"


def _aggregate_line(a: AggregatePreview) -> str:
    if a.estimate is not None:
        line = f"  {printable(a.name)}: ± {_width(a.estimate)} (noise scale {a.estimate.noise_scale:.4g})"
        if a.epsilon_for_target is not None:
            line += f"; epsilon for the target: {a.epsilon_for_target.display()}"
        return line
    assert a.sum is not None and a.count is not None
    return (
        f"  {printable(a.name)}: a mean of a sum ± {_width(a.sum)} and a count ± {_width(a.count)} "
        "(its interval narrows as the group grows)"
    )


def _text(e: FederatedExplanation, target: float | None) -> str:
    # names and reasons came from the network: escaped, so they cannot drive the analyst's terminal
    lines = [f"preview of query {printable(e.query_id)} on {printable(e.dataset)}: nothing is spent"]
    for n in e.nodes:
        b = n.budget
        left_after = b.remaining - n.epsilon if n.fits else None
        lines.append(
            f"node {printable(n.node)}: costs epsilon {n.epsilon.display()} under "
            f"{printable(n.agreement)}; you have "
            f"{b.analyst_remaining.display()} of {b.per_analyst.display()} left, the agreement "
            f"{b.agreement_remaining.display()} of {b.total.display()}"
            + (
                f"; after it: {left_after.display()}"
                if left_after is not None
                else "; it does NOT fit: this node would refuse the query"
            )
        )
        if n.min_group_size:
            lines.append(f"  groups of fewer than {n.min_group_size} people are suppressed")
    for node, reason in sorted(e.refused.items()):
        lines.append(f"node {printable(node)}: would not answer ({printable(reason)})")
    if e.combined:
        where = "combined over " + ", ".join(printable(n.node) for n in e.nodes if n.fits)
        lines.append(f"expected 95% half-width of each number ({where}):")
        lines.extend(_aggregate_line(a) for a in e.combined)
        if target is not None:
            lines.append(f"target half-width: {target:g}")
    return "\n".join(lines) + "\n"


def _noise(n: NoisePreview | None) -> dict[str, Any] | None:
    if n is None:
        return None
    return {"mechanism": n.mechanism.value, "noise_scale": n.noise_scale, "half_width": n.half_width}


def _aggregate(a: AggregatePreview) -> dict[str, Any]:
    return {
        "name": a.name,
        "estimate": _noise(a.estimate),
        "sum": _noise(a.sum),
        "count": _noise(a.count),
        "epsilon_for_target": None if a.epsilon_for_target is None else str(a.epsilon_for_target),
    }


def _json(e: FederatedExplanation) -> str:
    doc = {
        "query_id": e.query_id,
        "dataset": e.dataset,
        "nodes": [
            {
                "node": n.node,
                "agreement": n.agreement,
                "epsilon": str(n.epsilon),
                "fits": n.fits,
                "analyst_remaining": str(n.budget.analyst_remaining),
                "agreement_remaining": str(n.budget.agreement_remaining),
                "groups": n.groups,
                "min_group_size": n.min_group_size,
                "aggregates": [_aggregate(a) for a in n.aggregates],
            }
            for n in e.nodes
        ],
        "refused": dict(sorted(e.refused.items())),
        "combined": [_aggregate(a) for a in e.combined],
    }
    return json.dumps(doc, indent=2) + "\n"


def format_explanation(e: FederatedExplanation, fmt: str, target: float | None = None) -> str:
    """``table`` (for people; ``csv`` is read as ``table``) or ``json``."""
    return _json(e) if fmt == "json" else _text(e, target)
