"""The demo federation on disk: each authority's Parquet files, its agreements and consent files, and
the node and coordinator configs.

:func:`write_demo_federation` writes the population of :mod:`accord.demo.population` under one
folder, with every path in the configs relative to it, so the folder can be moved and served again.
The example agreements (``demo/agreements/*.toml``) go to ``agreements/``; the consent files an
operator would import (a national opt-out list per authority for the housing purpose, and the
county's service-review sign-ups) to ``consent/``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
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
from accord.node.config import DatasetConfig, NodeConfig, StateConfig
from accord.node.config_audit import AuditConfig, WitnessPeer, audit_origin
from accord.node.config_writer import write_node_config
from accord.policies.note import NoteSigner
from accord.policies.note_keys import generate_key, load_private_key, write_private_key
from accord.policies.pki import CA_CERT, leaf_paths
from accord.policies.revocation import CRL_FILE
from accord.rpc.fairness import FairnessConfig
from accord.rpc.transport import TlsFiles

__all__ = [
    "ANALYST",
    "AUDITOR",
    "AUDIT_KEYS",
    "AUDIT_SECONDS",
    "CERTS",
    "COORDINATOR",
    "DEFAULT_PORTS",
    "HOST",
    "DemoLayout",
    "copy_demo_agreements",
    "data_path",
    "demo_audit",
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
    consent_imports: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    """Per node, the arguments of each ``accord consent import`` its operator runs."""
    coordinator: str = COORDINATOR
    analyst: str = ANALYST


AGREEMENTS = "agreements"
HOUSING_AGREEMENT = "dsa-2026-007"
SERVICE_AGREEMENT = "dsa-2026-011"


def copy_demo_agreements(folder: Path) -> list[Path]:
    """Copy the example agreements into ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for item in sorted(resources.files("accord.demo").joinpath("agreements").iterdir(), key=lambda i: i.name):
        if item.name.endswith(".toml"):
            target = folder / item.name
            with item.open("rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(target)
    return out


def _picked(person: str, per_thousand: int, salt: str) -> bool:
    """A deterministic pseudo-random choice of about ``per_thousand`` people in 1,000."""
    digest = hashlib.sha256(f"{salt}:{person}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < per_thousand


def _write_consent(
    root: Path, node: str, people: Sequence[str], contacts: Sequence[str]
) -> tuple[tuple[str, ...], ...]:
    """The consent files of ``node``'s operator, and the ``accord consent import`` arguments for each."""
    folder = root / "consent"
    folder.mkdir(parents=True, exist_ok=True)
    opt_out = folder / f"{node}-national-opt-out.txt"
    lines = ["# National opt-out list (synthetic): one person identifier a line"]
    lines += [p for p in people if _picked(p, 30, "opt-out")]
    opt_out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    imports: list[tuple[str, ...]] = [
        (
            str(opt_out),
            "--opt-out-list",
            "--purpose",
            "HOUSING-CSC",
            "--source",
            "national opt-out list 2026-11",
        )
    ]
    if contacts:
        sign_ups = folder / f"{node}-service-review-consent.csv"
        with open(sign_ups, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["person", "purpose", "status", "timestamp", "source"])
            for p in contacts:
                if _picked(p, 600, "review"):
                    writer.writerow([p, "SERVICE-REVIEW", "given", "2026-06-15T09:00:00Z", "sign-up form"])
                    if _picked(p, 50, "withdrew"):
                        writer.writerow([p, "SERVICE-REVIEW", "withdrawn", "2026-09-01T12:00:00Z", "letter"])
        imports.append((str(sign_ups),))
    return tuple(imports)


def demo_node_config(
    root: Path,
    node: str,
    port: int,
    *,
    host: str = HOST,
    coordinators: Sequence[str] = (COORDINATOR,),
    answer_seconds: float = 1.0,
    secure_aggregation: bool = True,
) -> NodeConfig:
    """The config of one demo node in ``root`` (its state in ``root/state/<node>.sqlite3``;
    ``answer_seconds``: its answer-time budget, 0 for tests that do not time answers;
    ``secure_aggregation`` false: no dataset is secure-aggregated)."""
    if node not in DATASETS:
        raise ValueError(f"unknown node {node!r}; expected one of {', '.join(NODES)}")
    cert, key = leaf_paths(root / CERTS, "node", node)
    return NodeConfig(
        name=node,
        listen=f"{host}:{port}",
        tls_cert=cert,
        tls_key=key,
        tls_ca=root / CERTS / CA_CERT,
        tls_crl=root / CERTS / CRL_FILE,
        coordinators=tuple(coordinators),
        datasets=tuple(
            DatasetConfig(
                dataclasses.replace(ds.schema, secure=secure),
                root / data_path(node, ds.name),
                "parquet",
                ds.on_violation,
                secure_aggregation=secure is not None,
                holders=secure.holders if secure is not None else (),
            )
            for ds in DATASETS[node]
            for secure in [ds.secure if secure_aggregation else None]
        ),
        state=StateConfig("sqlite", root / "state" / f"{node}.sqlite3"),
        agreements_dir=root / AGREEMENTS,
        consent_path=root / "state" / f"{node}-consent.sqlite3",
        answer_seconds=answer_seconds,
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
    fairness: FairnessConfig | None = None,
) -> CoordinatorConfig:
    """The coordinator of a federation in ``root`` (certificates under ``root/certs``) serving the
    nodes of ``node_ports`` (name → port on ``host``)."""
    cert, key = leaf_paths(root / CERTS, "coordinator", COORDINATOR)
    return CoordinatorConfig(
        name=COORDINATOR,
        listen=f"{host}:{listen_port}",
        tls=TlsFiles(cert, key, root / CERTS / CA_CERT, root / CERTS / CRL_FILE),
        analysts=tuple(analysts),
        nodes=tuple(NodeEndpoint(n, f"{host}:{p}") for n, p in node_ports.items()),
        deadline_seconds=deadline_seconds,
        report_node_timings=report_node_timings,
        fairness=fairness or FairnessConfig(),
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


AUDITOR = "ico"
"""The demo's auditor (certificate role auditor)."""
AUDIT_KEYS = "audit"
"""Where the demo keeps each node's audit signing key (``audit/<node>.key``, mode 0600)."""
AUDIT_SECONDS = 1.0
"""How often demo nodes sign checkpoints and witness each other."""


def demo_audit(out_dir: Path, ports: Mapping[str, int]) -> dict[str, AuditConfig]:
    """Each node's ``[audit]``: its key (created if missing), checkpoints and witnessing every
    :data:`AUDIT_SECONDS`; every node witnesses every other whose port is known (not 0)."""
    keys: dict[str, str] = {}
    for node in NODES:
        path = out_dir / AUDIT_KEYS / f"{node}.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private_key(path, generate_key())
        keys[node] = NoteSigner(audit_origin(node), load_private_key(path)).vkey()
    return {
        node: AuditConfig(
            out_dir / AUDIT_KEYS / f"{node}.key",
            AUDIT_SECONDS,
            AUDIT_SECONDS,
            tuple(
                WitnessPeer(o, f"{HOST}:{ports[o]}", keys[o]) for o in NODES if o != node and ports.get(o, 0)
            ),
        )
        for node in NODES
    }


def write_demo_federation(
    out_dir: Path,
    people_per_authority: int = 100_000,
    seed: int = 7,
    ports: Mapping[str, int] | None = None,
    answer_seconds: float = 1.0,
    secure_aggregation: bool = True,
) -> DemoLayout:
    """Write ``data/<node>/*.parquet``, ``<node>.toml`` and ``coordinator.toml`` under ``out_dir``.
    ``ports`` may name any of the nodes and "coordinator" (0 = let the server pick); missing ones
    take :data:`DEFAULT_PORTS`; ``answer_seconds`` is every node's answer-time budget;
    ``secure_aggregation`` false answers every dataset with independent noise (tests of that mode).
    When a
    node's port is 0, ``coordinator.toml`` is not written (the caller writes it once the node has
    its port). Certificates are expected under ``out_dir/certs``."""
    out_dir = Path(out_dir)
    all_ports = {**DEFAULT_PORTS, **(ports or {})}
    pop = population_for(people_per_authority, seed)
    data: dict[str, Mapping[str, Path]] = {}
    rows: dict[str, Mapping[str, int]] = {}
    node_configs: dict[str, Path] = {}
    consent: dict[str, tuple[tuple[str, ...], ...]] = {}
    copy_demo_agreements(out_dir / AGREEMENTS)
    audit = demo_audit(out_dir, all_ports)
    for node in NODES:
        files, counts = {}, {}
        for name, table in pop.datasets[node].items():
            files[name] = out_dir / data_path(node, name)
            counts[name] = table.num_rows
            _write_table(files[name], table)
        data[node], rows[node] = MappingProxyType(files), MappingProxyType(counts)
        held = pop.datasets[node]
        contacts = (
            held["service_contacts"]["person_id"].unique().to_pylist() if "service_contacts" in held else []
        )
        consent[node] = _write_consent(out_dir, node, held["citizens"]["person_id"].to_pylist(), contacts)
        config = demo_node_config(
            out_dir,
            node,
            all_ports[node],
            answer_seconds=answer_seconds,
            secure_aggregation=secure_aggregation,
        )
        node_configs[node] = write_node_config(
            dataclasses.replace(config, audit=audit[node]), out_dir / f"{node}.toml"
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
        consent_imports=MappingProxyType(consent),
    )
    ports_of_nodes = {n: all_ports[n] for n in NODES}
    if all(ports_of_nodes.values()):  # a node on port 0 gets its port when it starts: the caller writes it
        coordinator = demo_coordinator_config(out_dir, ports_of_nodes, all_ports[COORDINATOR])
        write_coordinator_config(coordinator, layout.coordinator_config)
    return layout
