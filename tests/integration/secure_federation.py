"""A federation whose three nodes answer the census dataset only by secure aggregation (helpers for
the integration tests of secure aggregation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accord.node.state.sqlite import StateReader
from accord.query.schema import SecureAggregation
from accord.query.share import Share
from tests.conftest import TestPki
from tests.integration.federation import (
    PUMS_PID,
    Federation,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    start_federation,
    write_node,
)

NODES = ("county", "district-a", "district-b")
DATASET = "census"


def secure_node_configs(
    root: Path,
    honest: int = 3,
    delta: str = "1e-9",
    listen_for: Mapping[str, int] | None = None,
    **settings: Any,
) -> dict[str, Path]:
    """Node configs (written as files) whose ``census`` dataset is secure-aggregated (``listen_for``:
    the port each node listens on, for nodes run as processes)."""
    copy_census(root, PUMS_PID)
    setting = SecureAggregation(honest, delta, NODES)
    paths: dict[str, Path] = {}
    for name in NODES:
        dataset = pums_dataset(root, DATASET, PUMS_PID)
        dataset = dataclasses.replace(
            dataset,
            schema=dataclasses.replace(dataset.schema, secure=setting),
            secure_aggregation=True,
            holders=NODES,
        )
        listen = {"listen": f"127.0.0.1:{listen_for[name]}"} if listen_for else {}
        paths[name] = write_node(root, node_config(root, name, [dataset], **listen, **settings))
    return paths


def start_secure(root: Path, pki: TestPki, honest: int = 3, **settings: Any) -> Federation:
    link_certs(root, pki)
    return start_federation(root, pki, secure_node_configs(root, honest, **settings))


def recorded_share(root: Path, node: str, analyst: str, query_id: str) -> Share:
    """The noisy share ``node`` recorded for the query (read as its operator would, from its state)."""
    with StateReader(root / "state" / f"{node}.sqlite3", node) as reader:
        answer = reader.find(analyst, query_id)
    assert answer is not None, f"{node} recorded no answer to {query_id}"
    return Share.decode(answer.release)
