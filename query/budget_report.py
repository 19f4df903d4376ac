"""Budgets as people read them: one table (or JSON document) of budget lines, node by node.

Shared by the analyst's ``accord budget`` (lines from every node, through the coordinator) and the
operator's ``accord node budget`` (every analyst's lines from one node's ledger). Epsilons are
exact: shown as decimals when they are decimals, as fractions otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from accord.errors import printable
from accord.query.preview import BudgetLine

__all__ = ["budget_json", "budget_table"]

_HEAD = ("node", "agreement", "purpose", "analyst", "spent", "of", "left", "agreement spent", "of", "left",
         "per query", "answered", "valid until")  # fmt: skip


def _cells(node: str, line: BudgetLine) -> tuple[str, ...]:
    return (
        node,
        line.agreement,
        line.purpose,
        line.analyst,
        line.analyst_spent.display(),
        line.per_analyst.display(),
        line.analyst_remaining.display(),
        line.agreement_spent.display(),
        line.total.display(),
        line.agreement_remaining.display(),
        line.per_query.display(),
        str(line.answered),
        line.valid_until,
    )


def budget_table(
    lines: Mapping[str, Sequence[BudgetLine]], unreachable: Mapping[str, str] | None = None
) -> str:
    """A plain-text table of every node's lines; nodes that could not be asked are listed after."""
    # every cell came from the network: escaped, so it cannot break the table or drive a terminal
    rows = [[printable(c) for c in _cells(node, line)] for node in sorted(lines) for line in lines[node]]
    out: list[str] = []
    if rows:
        widths = [max(len(r[i]) for r in (_HEAD, *rows)) for i in range(len(_HEAD))]
        for r in (_HEAD, *rows):
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        out.append("")
        out.append(
            "spent/of/left: the analyst's epsilon under the agreement at that node (its per_analyst cap);"
        )
        out.append(
            "agreement spent/of/left: all its analysts together (its total cap). Every node keeps its own."
        )
    else:
        out.append("no budget: no agreement at these nodes covers this analyst")
    for node, reason in sorted((unreachable or {}).items()):
        out.append(f"node {printable(node)}: not asked ({printable(reason)})")
    return "\n".join(out) + "\n"


def budget_json(
    lines: Mapping[str, Sequence[BudgetLine]], unreachable: Mapping[str, str] | None = None
) -> str:
    """The same as JSON: ``{"nodes": {node: [line, ...]}, "unreachable": {node: reason}}``."""
    doc = {
        "nodes": {
            node: [
                {
                    "agreement": line.agreement,
                    "purpose": line.purpose,
                    "analyst": line.analyst,
                    "analyst_spent": str(line.analyst_spent),
                    "per_analyst": str(line.per_analyst),
                    "analyst_remaining": str(line.analyst_remaining),
                    "agreement_spent": str(line.agreement_spent),
                    "total": str(line.total),
                    "agreement_remaining": str(line.agreement_remaining),
                    "per_query": str(line.per_query),
                    "answered": line.answered,
                    "valid_until": line.valid_until,
                }
                for line in lines[node]
            ]
            for node in sorted(lines)
        },
        "unreachable": dict(sorted((unreachable or {}).items())),
    }
    return json.dumps(doc, indent=2) + "\n"
