"""``accord coordinator serve``, ``accord query``, ``accord catalog`` and ``accord budget``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from accord.coordinator.client import DEFAULT_PROFILE, DEFAULT_TIMEOUT, AccordClient, load_profile
from accord.coordinator.config import load_coordinator_config
from accord.coordinator.explanation import format_explanation
from accord.coordinator.server import start_coordinator
from accord.coordinator.table import format_release
from accord.errors import ConfigError, printable
from accord.query.budget_report import budget_json, budget_table
from accord.rpc.serving import serve_until_signal
from accord.rpc.transport import TlsFiles

__all__ = [
    "register",
    "register_budget",
    "register_catalog",
    "register_query",
]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "coordinator",
        help="run the coordinator",
        description="Run the federation's coordinator: it forwards analysts' signed queries to the nodes "
        "holding the dataset and combines their noisy answers (it never sees a record).",
    )
    cmds = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = cmds.add_parser(
        "serve",
        help="serve analysts over mTLS until SIGTERM/SIGINT",
        description="Serve analysts over mutual TLS until SIGTERM or Ctrl-C (in-flight queries finish).",
    )
    serve.add_argument("--config", required=True, type=Path, help="coordinator TOML file")
    serve.set_defaults(func=_serve)
    check = cmds.add_parser(
        "check",
        help="validate the config and certificates, then exit",
        description="Check the coordinator's config and certificates without serving.",
    )
    check.add_argument("--config", required=True, type=Path, help="coordinator TOML file")
    check.set_defaults(func=_check)


def _serve(args: argparse.Namespace) -> int:
    config = load_coordinator_config(args.config)
    running, service = start_coordinator(config)
    print(f"coordinator {config.name} listening on port {running.port}", flush=True)
    serve_until_signal(running, on_stop=service.close)
    return 0


def _check(args: argparse.Namespace) -> int:
    from accord.policies.identity import Identity
    from accord.rpc.serving import open_crl
    from accord.rpc.transport import check_certificate_files

    config = load_coordinator_config(args.config)
    identity = check_certificate_files(config.tls, expected=Identity("coordinator", config.name))
    crl = open_crl(config.tls)
    print(f"certificate: {identity}, verified by analysts as {identity.server_name}")
    for node in config.nodes:
        print(f"node {node.name} at {node.address}: verified as {Identity('node', node.name).server_name}")
    if crl is not None:
        print(f"revocation list: {config.tls.crl} ({len(crl.current().serials)} certificate(s) revoked)")
    print(f"{args.config}: OK ({len(config.nodes)} node(s), {len(config.analysts)} analyst(s))")
    return 0


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (a profile file, or the four options)")
    group.add_argument(
        "--profile",
        type=Path,
        help=f"analyst profile TOML (default: $ACCORD_PROFILE or {DEFAULT_PROFILE} if it exists)",
    )
    group.add_argument("--coordinator", help="coordinator HOST:PORT")
    group.add_argument("--coordinator-name", default=None, help="name in the coordinator certificate")
    group.add_argument("--cert", type=Path, help="analyst certificate (PEM)")
    group.add_argument("--key", type=Path, help="analyst private key (PEM)")
    group.add_argument("--ca", type=Path, help="federation CA certificate (PEM)")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait (default 60)")


def _connect(args: argparse.Namespace) -> AccordClient:
    explicit = [args.cert, args.key, args.ca]
    profile_path = args.profile or (
        Path(os.environ["ACCORD_PROFILE"]) if os.environ.get("ACCORD_PROFILE") else None
    )
    if profile_path is None and not any(explicit) and DEFAULT_PROFILE.expanduser().exists():
        profile_path = DEFAULT_PROFILE
    if profile_path is not None:
        profile = load_profile(profile_path)
        address = args.coordinator or profile.coordinator
        name = args.coordinator_name or profile.coordinator_name
        return AccordClient(
            address, profile.tls, name, agreement=getattr(args, "agreement", None) or profile.agreement
        )
    if not all(explicit) or not args.coordinator:
        raise ConfigError(
            "say how to reach the coordinator: --profile FILE, "
            "or all of --coordinator HOST:PORT --cert --key --ca"
        )
    return AccordClient(
        args.coordinator,
        TlsFiles(args.cert, args.key, args.ca),
        args.coordinator_name or "coordinator",
        agreement=getattr(args, "agreement", None) or "",
    )


def register_query(sub: Any) -> None:
    parser = sub.add_parser(
        "query",
        help="run a federated aggregate query",
        description="Run one aggregate SQL query at every node holding its dataset and print the combined, "
        "differentially private answer with 95% intervals.",
    )
    parser.add_argument(
        "sql",
        nargs="?",
        help='the query, e.g. "SELECT district, COUNT(*) FROM citizens GROUP BY district"; '
        "- reads it from standard input",
    )
    parser.add_argument("-f", "--file", type=Path, help="read the query from this file")
    parser.add_argument(
        "--epsilon", required=True, help="privacy budget to spend at each node, e.g. 0.5 or 1/4"
    )
    parser.add_argument(
        "--agreement", help="the data-sharing agreement the query is asked under (default: the profile's)"
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="preview instead: the cost at each node, what would be left, each number's 95%% half-width; "
        "spends nothing",
    )
    parser.add_argument(
        "--target-half-width",
        type=float,
        metavar="H",
        help="with --explain: also say the epsilon each count or sum needs for a 95%% half-width of H",
    )
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.add_argument(
        "--require-all", action="store_true", help="fail instead of answering when a node does not answer"
    )
    parser.add_argument(
        "--require-secure",
        action="store_true",
        help="refuse an answer that did not come by secure aggregation (for a dataset you know is secure)",
    )
    parser.add_argument("--query-id", help="reuse an id to retry a query without spending budget twice")
    _add_connection_args(parser)
    parser.set_defaults(func=_query)


def _sql(args: argparse.Namespace) -> str:
    """The query text: the argument, standard input (``-``) or ``--file``; exactly one of them."""
    if (args.sql is None) == (args.file is None):
        raise ConfigError("give the query once: as an argument, as - (standard input) or with -f FILE")
    if args.file is not None:
        try:
            return str(args.file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read the query from {args.file} ({err.__class__.__name__})") from None
    if args.sql == "-":
        return sys.stdin.read()
    return str(args.sql)


def _query(args: argparse.Namespace) -> int:
    sql = _sql(args)
    if args.target_half_width is not None and not args.explain:
        raise ConfigError("--target-half-width goes with --explain (a preview); add --explain")
    if args.explain:
        with _connect(args) as client:
            explanation = client.explain(
                sql, args.epsilon, target_half_width=args.target_half_width, timeout=args.timeout
            )
        _write(format_explanation(explanation, args.format, args.target_half_width))
        return 0
    with _connect(args) as client:
        release = client.query_release(
            sql,
            args.epsilon,
            require_all=args.require_all,
            query_id=args.query_id,
            timeout=args.timeout,
            require_secure=args.require_secure,
        )
    text = format_release(release, args.format)
    _write(text if text.endswith("\n") else text + "\n")
    if release.partial and args.format != "table":
        # The table says so itself; CSV has no place for it, so the warning goes to stderr.
        missing = ", ".join(f"{node} ({reason})" for node, reason in sorted(release.missing.items()))
        missing = printable(missing)
        print(f"accord query: PARTIAL: missing {missing}", file=sys.stderr)
    return 0


def register_catalog(sub: Any) -> None:
    parser = sub.add_parser(
        "catalog",
        help="list the federation's datasets and their public metadata",
        description="List every dataset of the federation, its columns with their public bounds and "
        "categories, and which nodes hold it, and whether each node is up.",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--agreement", help="show only what this data-sharing agreement grants")
    _add_connection_args(parser)
    parser.set_defaults(func=_catalog)


def _catalog(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        catalog = client.catalog(timeout=args.timeout, agreement=args.agreement or "")
        nodes = client.nodes(timeout=args.timeout)
    if args.format == "json":
        out = {
            "datasets": {
                name: {
                    "nodes": list(holders),
                    "privacy_unit": schema.privacy_unit,
                    "max_rows_per_person": schema.max_rows_per_person,
                    "secure_aggregation": None
                    if schema.secure is None
                    else {"honest_nodes": schema.secure.honest_nodes, "delta": schema.secure.delta},
                    "columns": [
                        {
                            "name": c.name,
                            "type": c.type.value,
                            "lower": c.lower,
                            "upper": c.upper,
                            "categories": list(c.categories) if c.categories is not None else None,
                        }
                        for c in schema.columns
                    ],
                }
                for name, (schema, holders) in catalog.items()
            },
            "nodes": nodes,
        }
        print(json.dumps(out, indent=2))
        return 0
    for n in nodes:
        state = "up" if n["reachable"] else f"DOWN ({n['error']})"
        print(printable(f"node {n['name']}: {state}"))
    for name, (schema, holders) in catalog.items():
        print(
            "\n"
            + printable(
                f"dataset {name} (nodes: {', '.join(holders)}; person column {schema.privacy_unit}, "
                f"at most {schema.max_rows_per_person} row(s) per person"
                + (
                    f"; secure aggregation, honest_nodes {schema.secure.honest_nodes}, "
                    f"delta {schema.secure.delta})"
                    if schema.secure is not None
                    else ")"
                )
            )
        )
        for c in schema.columns:
            extra = []
            if c.lower is not None:
                extra.append(f"bounds [{c.lower}, {c.upper}]")
            if c.categories is not None:
                shown = ", ".join(map(str, c.categories[:8])) + (" ..." if len(c.categories) > 8 else "")
                extra.append(f"groups: {shown}")
            print(printable(f"  {c.name:<28} {c.type.value:<8} {'; '.join(extra)}"))
    return 0


def register_budget(sub: Any) -> None:
    parser = sub.add_parser(
        "budget",
        help="your spent and remaining privacy budget at every node",
        description="Ask every node, through the coordinator, for your privacy budget under each "
        "agreement that covers you: epsilon spent and left against your per-analyst cap and the "
        "agreement's total. Node operators see every analyst with `accord node budget`.",
    )
    parser.add_argument("--agreement", help="only this agreement")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    _add_connection_args(parser)
    parser.set_defaults(func=_budget)


def _budget(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        lines, unreachable = client.budget(args.agreement or "", timeout=args.timeout)
    render = budget_json if args.format == "json" else budget_table
    _write(render(lines, unreachable))
    return 0


def _write(text: str) -> None:
    """Print a formatted answer. Its parts that came from the network were escaped where they were
    formatted (a newline inside a value shows as ``\\n``); this escapes any control character left
    but the formatter's own line breaks, so nothing printed can drive the analyst's terminal."""
    sys.stdout.write(printable(text, keep="\n"))
