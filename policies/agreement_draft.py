"""A draft data-sharing agreement for an operator to narrow (``accord agreement draft``): every
declared field of the node's datasets, shared in every way it supports, with placeholders where
the parties must write the purpose and the lawful basis."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import tomli_w

from accord.query.schema import ColumnType, DatasetSchema

__all__ = ["draft_agreement"]


def draft_agreement(
    ident: str,
    node: str,
    schemas: Mapping[str, DatasetSchema],
    analysts: tuple[str, ...],
    *,
    title: str = "Draft: every declared field, to be narrowed before signing",
    per_query: str = "1",
    per_analyst: str = "10",
    total: str = "50",
    min_group_size: int = 10,
    valid_from: date | None = None,
    valid_until: date | None = None,
) -> str:
    """A draft agreement (TOML text) sharing every declared field of ``schemas`` in every way it
    supports, for an operator to narrow to what was actually agreed (``accord agreement draft``)."""
    start = valid_from or date.today()
    end = valid_until or date(start.year + 1, start.month, min(start.day, 28))
    datasets: dict[str, Any] = {}
    for name in sorted(schemas):
        schema = schemas[name]
        fields: dict[str, list[str]] = {}
        for spec in schema.columns:
            if spec.name == schema.privacy_unit:
                continue
            uses = ["count", "filter"]
            if spec.type in (ColumnType.INTEGER, ColumnType.FLOAT) and spec.lower is not None:
                uses[1:1] = ["sum", "avg"]
            if spec.categories is not None:
                uses.append("group_by")
            fields[spec.name] = uses
        datasets[name] = {"count_rows": True, "fields": fields}
    return tomli_w.dumps(
        {
            "id": ident,
            "title": title,
            "lawful_basis": "TO BE COMPLETED: the Article 6 (and for special category data Article 9) basis",
            "consent": "opt-out",
            "valid_from": start,
            "valid_until": end,
            "review_date": end,
            "min_group_size": min_group_size,
            "purpose": {
                "code": "TO-BE-COMPLETED",
                "description": "TO BE COMPLETED: what the analysis is for",
            },
            "parties": {"nodes": [node], "organisations": [], "analysts": list(analysts)},
            "budget": {"per_analyst": per_analyst, "total": total, "per_query": per_query},
            "datasets": datasets,
        }
    )
