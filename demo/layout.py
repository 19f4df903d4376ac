"""The demo federation on disk: each authority's Parquet files and the node and coordinator configs.

:func:`write_demo_federation` writes the population of :mod:`accord.demo.population` under one
folder, with every path in the configs relative to it, so the folder can be moved and served again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.parquet as pq

from accord.coordinator.config import (
    CoordinatorConfig,
    NodeEndpoint,
    write_coordinator_config,
)
from accord.demo.datasets import DATASETS, NODES
from accord.demo.population import population_for
from accord.node.config import DatasetConfig, NodeConfig, StateConfig, write_node_config
from accord.policies.pki import CA_CERT, leaf_paths
from accord.rpc.transport import TlsFiles

__all__ = [
    "ANALYST",
    "CERTS",
    "COORDINATOR",
    "DEFAULT_PORTS",
    "HOST",
    "DemoLayout",
    "data_path",
    "demo_coordinator_config",
    "demo_node_config",
    "write_demo_federation",
]

COORDINATOR = "coordinator"
ANALYST = "alice"
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType(
    {COORDINATOR: 50050, "county": 50051, "district-a": 50052, "district-b": 50053}
)
HOST = "127.0.0.1"


CERTS = "certs"
"""The folder, inside the federation's folder, of its development PKI (``accord pki init --dir``)."""


def data_path(node: str, dataset: str) -> str:
    return f"data/{node}/{dataset}.parquet"


@dataclass(frozen=True)
class DemoLayout:
    root: Path
    nodes: tuple[str, ...]
    ports: Mapping[str, int]  # node names and "coordinator"
    node_configs: Mapping[str, Path]
    coordinator_config: Path
    data: Mapping[str, Mapping[str, Path]]  # node -> dataset -> Parquet file
    rows: Mapping[str, Mapping[str, int]]  # node -> dataset -> row count
    population: int
    ca: Path
    coordinator: str = COORDINATOR
    analyst: str = ANALYST


def demo_node_config(
    root: Path, node: str, port: int, *, host: str = HOST, coordinators: Sequence[str] = (COORDINATOR,)
) -> NodeConfig:
    """The config of one demo node in ``root`` (its state in ``root/state/<node>.sqlite3``)."""
    if node not in DATASETS:
        raise ValueError(f"unknown node {node!r}; expected one of {', '.join(NODES)}")
    cert, key = leaf_paths(root / CERTS, "node", node)
    return NodeConfig(
        name=node,
        listen=f"{host}:{port}",
        tls_cert=cert,
        tls_key=key,
        tls_ca=root / CERTS / CA_CERT,
        coordinators=tuple(coordinators),
        datasets=tuple(
            DatasetConfig(ds.schema, root / data_path(node, ds.name), "parquet", ds.on_violation)
            for ds in DATASETS[node]
        ),
        state=StateConfig("sqlite", root / "state" / f"{node}.sqlite3"),
    )


def demo_coordinator_config(
    root: Path,
    node_ports: Mapping[str, int],
    listen_port: int,
    *,
    host: str = HOST,
    deadline_seconds: float = 10,
    analysts: Sequence[str] = (ANALYST,),
    report_node_timings: bool = False,
) -> CoordinatorConfig:
    """The coordinator of a federation in ``root`` (certificates under ``root/certs``) serving the
    nodes of ``node_ports`` (name → port on ``host``)."""
    cert, key = leaf_paths(root / CERTS, "coordinator", COORDINATOR)
    return CoordinatorConfig(
        name=COORDINATOR,
        listen=f"{host}:{listen_port}",
        tls=TlsFiles(cert, key, root / CERTS / CA_CERT),
        analysts=tuple(analysts),
        nodes=tuple(NodeEndpoint(n, f"{host}:{p}") for n, p in node_ports.items()),
        deadline_seconds=deadline_seconds,
        report_node_timings=report_node_timings,
    )


def _write_table(path: Path, table: pa.Table) -> None:
    """Write a Parquet file via a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_demo_federation(
    out_dir: Path,
    people_per_authority: int = 100_000,
    seed: int = 7,
    ports: Mapping[str, int] | None = None,
) -> DemoLayout:
    """Write ``data/<node>/*.parquet``, ``<node>.toml`` and ``coordinator.toml`` under ``out_dir``.
    ``ports`` may name any of the nodes and "coordinator" (0 = let the server pick); missing ones
    take :data:`DEFAULT_PORTS`. When a node's port is 0, ``coordinator.toml`` is not written (the
    caller writes it once the node has its port). Certificates are expected under ``out_dir/certs``."""
    out_dir = Path(out_dir)
    all_ports = {**DEFAULT_PORTS, **(ports or {})}
    pop = population_for(people_per_authority, seed)
    data: dict[str, Mapping[str, Path]] = {}
    rows: dict[str, Mapping[str, int]] = {}
    node_configs: dict[str, Path] = {}
    for node in NODES:
        files, counts = {}, {}
        for name, table in pop.datasets[node].items():
            files[name] = out_dir / data_path(node, name)
            counts[name] = table.num_rows
            _write_table(files[name], table)
        data[node], rows[node] = MappingProxyType(files), MappingProxyType(counts)
        node_configs[node] = write_node_config(
            demo_node_config(out_dir, node, all_ports[node]), out_dir / f"{node}.toml"
        )
    layout = DemoLayout(
        root=out_dir,
        nodes=NODES,
        ports=MappingProxyType(all_ports),
        node_configs=MappingProxyType(node_configs),
        coordinator_config=out_dir / "coordinator.toml",
        data=MappingProxyType(data),
        rows=MappingProxyType(rows),
        population=pop.size,
        ca=out_dir / CERTS / CA_CERT,
    )
    ports_of_nodes = {n: all_ports[n] for n in NODES}
    if all(ports_of_nodes.values()):  # a node on port 0 gets its port when it starts: the caller writes it
        coordinator = demo_coordinator_config(out_dir, ports_of_nodes, all_ports[COORDINATOR])
        write_coordinator_config(coordinator, layout.coordinator_config)
    return layout
