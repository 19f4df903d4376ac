"""A federation whose nodes sign their audit logs and witness each other, and an auditor."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import start_coordinator
from accord.demo.processes import free_ports
from accord.node.config import load_node_config
from accord.node.config_audit import AuditConfig, WitnessPeer, audit_origin, witness_name
from accord.node.server import start_node
from accord.policies.note import ALG_COSIGNATURE, NoteSigner
from accord.policies.note_keys import generate_key, load_private_key, write_private_key
from accord.policies.pki import issue
from accord.rpc.serving import RunningServer
from accord.rpc.transport import TlsFiles
from tests.conftest import TestPki
from tests.integration.federation import (
    LISTEN,
    PUMS_PID,
    TIMEOUT,
    Federation,
    coordinator_config,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    write_coordinator,
    write_node,
)

NODES = ("county", "district-a")
AUDITOR = "ada"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclasses.dataclass(frozen=True)
class AuditSetup:
    root: Path
    configs: dict[str, Path]
    addresses: dict[str, str]
    keys: dict[str, str]
    """Each node's checkpoint vkey."""
    witness_keys: dict[str, str]
    """Each node's cosignature vkey."""


def auditor_tls(pki: TestPki) -> TlsFiles:
    if not (pki.root / "auditors" / f"{AUDITOR}.pem").exists():
        issue(pki.root, pki.root, "auditor", AUDITOR, days=2)
    return pki.tls("auditor", AUDITOR)


def audit_setup(root: Path, pki: TestPki, every: float = 0.2, witnesses: bool = True) -> AuditSetup:
    """county and district over the census sample, each with an audit key, checkpoints every
    ``every`` seconds, and (``witnesses``) witnessing each other as often, on fixed free ports."""
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip(NODES, free_ports(len(NODES)), strict=True)}
    keys: dict[str, str] = {}
    witness_keys: dict[str, str] = {}
    for n in NODES:
        path = root / "audit" / f"{n}.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_key(path, generate_key())
        private = load_private_key(path)
        keys[n] = NoteSigner(audit_origin(n), private).vkey()
        witness_keys[n] = NoteSigner(witness_name(n), private).vkey(ALG_COSIGNATURE)
    configs: dict[str, Path] = {}
    for n in NODES:
        peers = tuple(WitnessPeer(o, addresses[o], keys[o]) for o in NODES if o != n) if witnesses else ()
        audit = AuditConfig(root / "audit" / f"{n}.key", every, every, peers)
        config = node_config(
            root, n, [pums_dataset(root, "pums", PUMS_PID)], listen=addresses[n], audit=audit
        )
        configs[n] = write_node(root, config)
    return AuditSetup(root, configs, addresses, keys, witness_keys)


def start_audited(
    setup: AuditSetup, pki: TestPki, nodes: Mapping[str, RunningServer] | None = None
) -> Federation:
    """Start the nodes (on their fixed ports) not in ``nodes``, and a coordinator."""
    running = dict(nodes or {})
    for n, path in setup.configs.items():
        if n not in running:
            running[n] = start_node(load_node_config(path))
    path = write_coordinator(setup.root, coordinator_config(setup.root, setup.addresses))
    coordinator, service = start_coordinator(load_coordinator_config(path), listen=LISTEN)
    return Federation(setup.root, pki, running, coordinator, service)
