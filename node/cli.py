"""``accord node serve``, ``accord node check`` and ``accord node audit-key``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from accord.errors import ConfigError
from accord.node.config import load_node_config
from accord.node.config_audit import audit_origin, witness_name
from accord.node.operator_cli import register_node_budget
from accord.node.server import build_service, start_node
from accord.node.state import MemoryState, StateInUse
from accord.policies.identity import Identity
from accord.policies.note import ALG_COSIGNATURE, NoteSigner
from accord.policies.note_keys import generate_key, load_private_key, write_private_key
from accord.rpc.serving import open_crl, serve_until_signal
from accord.rpc.transport import check_certificate_files

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "node",
        help="run an authority's node",
        description="Run an authority's node: serve its datasets to the federation's coordinator "
        "under differential privacy, or check its config, certificates, data and state first.",
    )
    cmds = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = cmds.add_parser(
        "serve",
        help="serve the configured datasets over mTLS until SIGTERM/SIGINT",
        description="Load and check every dataset, open the node's state, then answer signed queries "
        "over mutual TLS until SIGTERM or Ctrl-C (in-flight queries finish first).",
    )
    serve.add_argument("--config", required=True, type=Path, help="node TOML file")
    serve.set_defaults(func=_serve)
    check = cmds.add_parser(
        "check",
        help="validate the config, certificates, data and state, then exit",
        description="Everything `serve` checks at start-up, without serving: the config, the "
        "certificates, every dataset against its declaration, the agreements, the consent register "
        "and the state file (which must not be in use by a running node).",
    )
    check.add_argument("--config", required=True, type=Path, help="node TOML file")
    check.set_defaults(func=_check)
    key = cmds.add_parser(
        "audit-key",
        help="create the node's audit signing key, or show its public keys",
        description="Show the public keys of the node's Ed25519 audit key ([audit] key): the "
        "checkpoint key (give it to auditors and to the nodes that witness this one) and the witness "
        "key (auditors who require this node's cosignatures list it). With --create, create the key "
        "first (never over an existing one).",
    )
    key.add_argument("--config", required=True, type=Path, help="node TOML file")
    key.add_argument("--create", action="store_true", help="create the key file (mode 0600)")
    key.set_defaults(func=_audit_key)
    register_node_budget(cmds)


def _serve(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    running = start_node(config)
    print(f"node {config.name} listening on port {running.port}", flush=True)
    serve_until_signal(running)
    return 0


def _audit_key(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    if config.audit.key is None:
        raise ConfigError(
            f'{args.config}: [audit] key is not set; add `key = "audit/{config.name}.key"` under [audit]'
        )
    if args.create:
        config.audit.key.parent.mkdir(parents=True, exist_ok=True)
        write_private_key(config.audit.key, generate_key())
        print(f"created {config.audit.key}")
    key = load_private_key(config.audit.key)
    print(f"checkpoint key: {NoteSigner(audit_origin(config.name), key).vkey()}")
    print(f"witness key:    {NoteSigner(witness_name(config.name), key).vkey(ALG_COSIGNATURE)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    identity = check_certificate_files(config.tls, expected=Identity("node", config.name))
    crl = open_crl(config.tls)
    where = config.state.path if config.state.path is not None else "memory (forgotten on restart)"
    state_note = f"state: {config.state.backend} {where}"
    try:
        service = build_service(config)
    except StateInUse:
        # A running node holds the file: it opened and checked it at start-up. Check the rest.
        service = build_service(config, state=MemoryState())
        state_note = f"state: {where} is in use by the running node (checked when it started)"
    try:
        for schema in service.schemas:
            print(
                f"dataset {schema.name}: {len(schema.columns)} column(s), person column {schema.privacy_unit}"
            )
        held = sorted(service.gate.agreements)
        listed = ", ".join(held) or "none (every query will be refused)"
        print(f"agreements in {config.agreements_dir}: {listed}")
        print(f"certificate: {identity}, verified by clients as {identity.server_name}")
        if crl is not None:
            revoked = len(crl.current().serials)
            print(f"revocation list: {config.tls_crl} ({revoked} certificate(s) revoked)")
        print(f"consent register: {config.consent_path}")
        print(state_note)
    finally:
        service.close()
    print(f"{args.config}: OK")
    return 0
