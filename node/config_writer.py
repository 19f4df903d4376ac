"""Writing a node config back as TOML, with the paths relative to the file's folder: how the demo,
the benchmarks and the tests make theirs (the reader is :func:`accord.node.config.load_node_config`,
and the two round-trip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from accord.config import relative_path, write_text_atomic
from accord.node.config import DatasetConfig, NodeConfig
from accord.node.config_audit import audit_table
from accord.query.schema import ColumnSpec

__all__ = ["node_config_toml", "write_node_config"]


def _column_table(c: ColumnSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c.type.value}
    if c.lower is not None:
        out["lower"], out["upper"] = c.lower, c.upper
    if c.categories is not None:
        out["categories"] = list(c.categories)
    if c.description:
        out["description"] = c.description
    return out


def _dataset_timing(d: DatasetConfig) -> dict[str, float]:
    """A dataset's answer-time overrides, when it has any."""
    pairs = (("answer_seconds", d.answer_seconds), ("grouped_answer_seconds", d.grouped_answer_seconds))
    return {k: v for k, v in pairs if v is not None}


def node_config_toml(config: NodeConfig, folder: Path) -> str:
    """The TOML text of ``config`` for a file in ``folder``: :func:`load_node_config` reads it back
    as ``config`` (paths inside ``folder`` are written relative to it)."""
    doc: dict[str, Any] = {
        "node": {
            "name": config.name,
            "listen": config.listen,
            "max_workers": config.max_workers,
            "max_concurrent_rpcs": config.max_concurrent_rpcs,
        },
        "tls": {
            name: relative_path(p, folder)
            for name, p in (
                ("cert", config.tls_cert),
                ("key", config.tls_key),
                ("ca", config.tls_ca),
                ("crl", config.tls_crl),
            )
            if p is not None
        },
        "fairness": {
            "max_in_flight": config.fairness.max_in_flight,
            "per_minute": config.fairness.per_minute,
            "burst": config.fairness.burst,
        },
        "access": {"coordinators": list(config.coordinators)},
        "queries": {
            "max_age_seconds": config.query_max_age_seconds,
            "clock_skew_seconds": config.clock_skew_seconds,
            "max_epsilon": str(config.max_epsilon),
        },
        "agreements": {"dir": relative_path(config.agreements_dir, folder)},
        "consent": {"path": relative_path(config.consent_path, folder)},
        "timing": {
            "answer_seconds": config.answer_seconds,
            "report_node_seconds": config.report_node_seconds,
        },
        "audit": audit_table(config.audit, folder),
        "state": {"backend": config.state.backend}
        | ({"path": relative_path(config.state.path, folder)} if config.state.path is not None else {}),
        "datasets": {
            d.schema.name: {
                "path": relative_path(d.path, folder),
                "format": d.format,
                "description": d.schema.description,
                "privacy_unit": d.schema.privacy_unit,
                "max_rows_per_person": d.schema.max_rows_per_person,
                "max_rows": d.schema.max_rows,
                "on_violation": d.on_violation,
                "columns": {c.name: _column_table(c) for c in d.schema.columns},
            }
            | _dataset_timing(d)
            | ({"secure_aggregation": True, "holders": list(d.holders)} if d.secure_aggregation else {})
            for d in config.datasets
        },
    }
    secure = next((d.schema.secure for d in config.datasets if d.schema.secure is not None), None)
    if secure is not None:
        doc["secure_aggregation"] = {"honest_nodes": secure.honest_nodes, "delta": secure.delta}
    return f"# node config of {config.name} (see the README for every key)\n" + tomli_w.dumps(doc)


def write_node_config(config: NodeConfig, path: Path) -> Path:
    """Write ``config`` to ``path`` (atomically: a reader never sees half a file); return ``path``."""
    return write_text_atomic(path, node_config_toml(config, Path(path).parent))
