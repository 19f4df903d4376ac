"""``accord node serve`` and ``accord node check``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from accord.node.config import load_node_config
from accord.node.server import build_service, start_node
from accord.rpc.serving import serve_until_signal
from accord.rpc.transport import TlsFiles, check_certificate_files


def register(sub: Any) -> None:
    parser = sub.add_parser("node", help="run an authority's node")
    cmds = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = cmds.add_parser("serve", help="serve the configured datasets over mTLS until SIGTERM/SIGINT")
    serve.add_argument("--config", required=True, type=Path, help="node TOML file")
    serve.set_defaults(func=_serve)
    check = cmds.add_parser("check", help="validate the config, certificates and data, then exit")
    check.add_argument("--config", required=True, type=Path, help="node TOML file")
    check.set_defaults(func=_check)


def _serve(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    running = start_node(config)
    print(f"node {config.name} listening on port {running.port}", flush=True)
    serve_until_signal(running)
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    check_certificate_files(TlsFiles(config.tls_cert, config.tls_key, config.tls_ca))
    service = build_service(config)
    for schema in service.schemas:
        print(f"dataset {schema.name}: {len(schema.columns)} column(s), person column {schema.privacy_unit}")
    print(f"{args.config}: OK")
    return 0
