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

from accord.demo.datasets import DATASETS, NODES
from accord.demo.population import population_for

__all__ = [
    "ANALYST",
    "CA_PATH",
    "COORDINATOR",
    "DEFAULT_PORTS",
    "HOST",
    "DemoLayout",
    "cert_paths",
    "coordinator_config_toml",
    "data_path",
    "node_config_toml",
    "write_demo_federation",
]

COORDINATOR = "coordinator"
ANALYST = "alice"
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType(
    {COORDINATOR: 50050, "county": 50051, "district-a": 50052, "district-b": 50053}
)
HOST = "127.0.0.1"


def cert_paths(role: str, name: str) -> tuple[str, str]:
    """(certificate, key) paths relative to the config directory, for role "nodes",
    "coordinators" or "analysts". The one place that knows the PKI's layout."""
    return f"certs/{role}/{name}.pem", f"certs/{role}/{name}.key"


CA_PATH = "certs/ca.pem"


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


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        out = v.replace("\\", "\\\\").replace('"', '\\"')
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in out):
            raise ValueError(f"control character in TOML string {v!r}")
        return f'"{out}"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _table(header: str, entries: Mapping[str, object]) -> list[str]:
    return [f"[{header}]", *(f"{k} = {_toml_value(v)}" for k, v in entries.items())]


def node_config_toml(
    node: str, port: int, *, host: str = HOST, coordinators: Sequence[str] = (COORDINATOR,)
) -> str:
    """The TOML config of one demo node, paths relative to the file's directory."""
    if node not in DATASETS:
        raise ValueError(f"unknown node {node!r}; expected one of {', '.join(NODES)}")
    cert, key = cert_paths("nodes", node)
    lines = _table("node", {"name": node, "listen": f"{host}:{port}"})
    lines += _table("tls", {"cert": cert, "key": key, "ca": CA_PATH})
    lines += _table("access", {"coordinators": list(coordinators)})
    for ds in DATASETS[node]:
        lines += _table(
            f"datasets.{ds.name}",
            {
                "path": data_path(node, ds.name),
                "description": ds.description,
                "privacy_unit": ds.privacy_unit,
                "max_rows_per_person": ds.max_rows_per_person,
                "on_violation": ds.on_violation,
            },
        )
        for col in ds.columns:
            entries: dict[str, object] = {"type": col.type}
            if col.lower is not None:
                entries.update(lower=col.lower, upper=col.upper)
            if col.categories is not None:
                entries["categories"] = list(col.categories)
            lines += _table(f"datasets.{ds.name}.columns.{col.name}", entries)
    return "\n".join(lines) + "\n"


def coordinator_config_toml(
    layout: DemoLayout | None,
    node_ports: Mapping[str, int],
    listen_port: int | None = None,
    *,
    host: str = HOST,
    deadline_seconds: int = 10,
    analysts: Sequence[str] = (ANALYST,),
    report_node_timings: bool = False,
) -> str:
    """The coordinator's TOML. Nodes and the listen port default to ``layout``'s."""
    if listen_port is None:
        listen_port = layout.ports[COORDINATOR] if layout is not None else DEFAULT_PORTS[COORDINATOR]
    nodes = layout.nodes if layout is not None else tuple(node_ports)
    cert, key = cert_paths("coordinators", COORDINATOR)
    settings: dict[str, object] = {
        "name": COORDINATOR,
        "listen": f"{host}:{listen_port}",
        "deadline_seconds": deadline_seconds,
    }
    if report_node_timings:
        settings["report_node_timings"] = True
    lines = _table("coordinator", settings)
    lines += _table("tls", {"cert": cert, "key": key, "ca": CA_PATH})
    lines += _table("access", {"analysts": list(analysts)})
    for node in nodes:
        lines += _table(f"nodes.{node}", {"address": f"{host}:{node_ports[node]}"})
    return "\n".join(lines) + "\n"


def _atomic(path: Path, write: str | pa.Table) -> None:
    """Write via a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if isinstance(write, str):
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(write)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            pq.write_table(write, tmp)
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
    take :data:`DEFAULT_PORTS`. Certificates are expected under ``out_dir/certs``."""
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
            _atomic(files[name], table)
        data[node], rows[node] = MappingProxyType(files), MappingProxyType(counts)
        node_configs[node] = out_dir / f"{node}.toml"
        _atomic(node_configs[node], node_config_toml(node, all_ports[node]))
    layout = DemoLayout(
        root=out_dir,
        nodes=NODES,
        ports=MappingProxyType(all_ports),
        node_configs=MappingProxyType(node_configs),
        coordinator_config=out_dir / "coordinator.toml",
        data=MappingProxyType(data),
        rows=MappingProxyType(rows),
        population=pop.size,
        ca=out_dir / CA_PATH,
    )
    _atomic(layout.coordinator_config, coordinator_config_toml(layout, all_ports))
    return layout
