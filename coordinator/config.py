"""The coordinator's TOML configuration, validated at start-up.

```toml
[coordinator]
name = "coordinator"            # must match the coordinator certificate's name
listen = "127.0.0.1:50050"
deadline_seconds = 10           # per-node deadline for each query
max_workers = 16                # optional
max_in_flight = 32              # optional: queries answered at once; more get RESOURCE_EXHAUSTED
report_node_timings = false     # optional: send analysts the slowest node's own execution time
                                # (a data-dependent number; for benchmarking, off by default)
report_coordinator_seconds = false  # optional: send analysts the coordinator's own handler time
                                # (about the slowest node's time: a disclosure; off by default)

[tls]
cert = "certs/coordinators/coordinator.pem"
key = "certs/coordinators/coordinator.key"
ca = "certs/ca.pem"
crl = "certs/crl.pem"           # optional: the federation's revocation list (`accord pki revoke`)

[fairness]                      # optional: one analyst's share of the coordinator
max_in_flight = 4               # optional (default 4): one analyst's queries running at once
per_minute = 120                # optional (default 120) queries a minute, in bursts of up to
burst = 20                      # optional (default 20)

[access]
analysts = ["alice"]            # analyst certificate names allowed to submit queries

[nodes.county]                  # one table per node; the key is the node's certificate name
address = "127.0.0.1:50051"
```
Relative paths resolve against the directory of the config file. Every error names the file,
the key and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from accord.config import Table, read_toml, relative_path, write_text_atomic
from accord.errors import ConfigError
from accord.rpc.fairness import FairnessConfig, fairness_config
from accord.rpc.transport import TlsFiles

__all__ = [
    "CoordinatorConfig",
    "NodeEndpoint",
    "coordinator_config_toml",
    "load_coordinator_config",
    "write_coordinator_config",
]

_MISSING_FILE = "create it with `accord pki init`"


@dataclass(frozen=True)
class NodeEndpoint:
    name: str
    address: str


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str
    listen: str
    tls: TlsFiles
    analysts: tuple[str, ...]
    nodes: tuple[NodeEndpoint, ...]
    deadline_seconds: float = 10.0
    max_workers: int = 16
    max_in_flight: int = 32
    report_node_timings: bool = False
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    report_coordinator_seconds: bool = False


def load_coordinator_config(path: str | Path) -> CoordinatorConfig:
    """Read and validate a coordinator config file. Raises :class:`ConfigError` naming the file,
    the key and the fix."""
    path = Path(path)
    data = read_toml(path, "pass the coordinator config with --config")
    top = Table(path, "", data)
    top.check_keys({"coordinator", "tls", "access", "nodes", "fairness"})
    for section in ("coordinator", "tls", "nodes"):
        if section not in data:
            raise ConfigError(f"{path}: missing [{section}] section; see the README for an example")
    co = top.sub("coordinator")
    co.check_keys(
        {
            "name",
            "listen",
            "deadline_seconds",
            "max_workers",
            "max_in_flight",
            "report_node_timings",
            "report_coordinator_seconds",
        }
    )
    name = co.name("name")
    listen = co.address("listen", listen=True)
    deadline = co.get("deadline_seconds", float, 10.0)
    if not (0 < deadline <= 3600) or math.isnan(deadline):
        raise co.error("deadline_seconds", "must be between 0 and 3600 seconds")
    max_workers = co.integer("max_workers", 16, 1, 1024, "16 is a good start")
    max_in_flight = co.integer("max_in_flight", 32, 1, 65536, "32 is a good start")
    report_node_timings = co.get("report_node_timings", bool, False)
    report_coordinator_seconds = co.get("report_coordinator_seconds", bool, False)

    tls = top.sub("tls")
    tls.check_keys({"cert", "key", "ca", "crl"})
    cert, key, ca = (tls.path(k, must_exist=True, hint=_MISSING_FILE) for k in ("cert", "key", "ca"))
    crl = (
        tls.path("crl", must_exist=True, hint="write it with `accord pki revoke`") if tls.has("crl") else None
    )
    tls_files = TlsFiles(cert, key, ca, crl)

    access = top.sub("access")
    access.check_keys({"analysts"})
    analysts = access.names("analysts", '["alice"]', "analyst certificate names allowed to query")

    nodes_table = top.sub("nodes")
    if not nodes_table.table:
        raise nodes_table.error("", "no nodes configured; add a [nodes.NAME] table with an address")
    nodes: list[NodeEndpoint] = []
    for node_name in sorted(nodes_table.table):
        reader = nodes_table.sub(node_name)
        reader.check_keys({"address"})
        nodes_table.name(node_name, node_name)
        address = reader.address("address", listen=False)
        same = [n.name for n in nodes if n.address == address]
        if same:
            raise reader.error(
                "address", f"{address!r} is also the address of nodes.{same[0]}; each node has its own"
            )
        nodes.append(NodeEndpoint(node_name, address))
    return CoordinatorConfig(
        name=name,
        listen=listen,
        tls=tls_files,
        analysts=analysts,
        nodes=tuple(nodes),
        deadline_seconds=deadline,
        max_workers=max_workers,
        max_in_flight=max_in_flight,
        report_node_timings=report_node_timings,
        fairness=fairness_config(top.sub("fairness")),
        report_coordinator_seconds=report_coordinator_seconds,
    )


def coordinator_config_toml(config: CoordinatorConfig, folder: Path) -> str:
    """The TOML text of ``config`` for a file in ``folder`` (paths inside it written relative to
    it): :func:`load_coordinator_config` reads it back as ``config``."""
    doc: dict[str, Any] = {
        "coordinator": {
            "name": config.name,
            "listen": config.listen,
            "deadline_seconds": config.deadline_seconds,
            "max_workers": config.max_workers,
            "max_in_flight": config.max_in_flight,
            "report_node_timings": config.report_node_timings,
            "report_coordinator_seconds": config.report_coordinator_seconds,
        },
        "tls": {
            k: relative_path(getattr(config.tls, k), folder)
            for k in ("cert", "key", "ca", "crl")
            if getattr(config.tls, k) is not None
        },
        "fairness": {
            "max_in_flight": config.fairness.max_in_flight,
            "per_minute": config.fairness.per_minute,
            "burst": config.fairness.burst,
        },
        "access": {"analysts": list(config.analysts)},
        "nodes": {n.name: {"address": n.address} for n in config.nodes},
    }
    return f"# coordinator config of {config.name} (see the README for every key)\n" + tomli_w.dumps(doc)


def write_coordinator_config(config: CoordinatorConfig, path: Path) -> Path:
    """Write ``config`` to ``path`` atomically; return ``path``."""
    return write_text_atomic(path, coordinator_config_toml(config, Path(path).parent))
