"""The node operator's commands besides serving: ``accord consent``, ``accord register``,
``accord agreement`` and ``accord node budget``.

Each reads the node's config (``--config``), so it finds the same consent register, agreements and
state file as the running node; each can run while the node runs (the consent register and the
state are SQLite files opened by several processes; the state is only read).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accord.errors import ConfigError
from accord.node.config import NodeConfig, load_node_config
from accord.node.consent import ConsentRegister
from accord.node.register import build_register, read_usage, transparency, write_register
from accord.node.server import build_gate
from accord.node.state import StateReader
from accord.policies.agreement_draft import draft_agreement
from accord.policies.agreements import Agreement, load_agreements
from accord.policies.budget import Spent, budget_line
from accord.policies.consent import (
    ConsentRecord,
    ConsentStatus,
    parse_consent_csv,
    parse_opt_out_list,
    parse_time,
    refuse_future,
)
from accord.query.budget_report import budget_json, budget_table
from accord.query.epsilon import Epsilon
from accord.query.preview import BudgetLine

__all__ = [
    "budget_lines",
    "register_agreement",
    "register_consent",
    "register_node_budget",
    "register_register",
]


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the node's TOML config")


def _agreements(config: NodeConfig) -> dict[str, Agreement]:
    schemas = {d.schema.name: d.schema for d in config.datasets}
    return dict(load_agreements(config.agreements_dir, config.name, schemas))


def _time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        when = parse_time(text)
    except ValueError:
        raise ConfigError(f"--at {text!r} is not a time; write it like 2026-11-30T10:00:00Z") from None
    future = refuse_future(when, datetime.now(UTC))
    if future is not None:
        raise ConfigError(f"--at {text!r}: {future}")
    return when


# ---- accord consent -----------------------------------------------------------------------------


def register_consent(sub: Any) -> None:
    parser = sub.add_parser(
        "consent",
        help="manage the node's consent register (operators)",
        description="Record citizens' consent choices in the node's consent register (every record is "
        "kept: the full history), show them, and tell a citizen what their records may be used for. "
        "A change applies to every query that starts after it.",
    )
    cmds = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = cmds.add_parser(
        "import",
        help="import a consent CSV, or a national opt-out list with --opt-out-list",
        description="Import consent records from a CSV file with the header "
        "person,purpose,status,timestamp,source (status: given, withdrawn or refused; timestamp like "
        "2026-11-30T10:00:00Z), or, with --opt-out-list, a file of person identifiers, one a line, "
        "recorded as refused for --purpose. A file with any bad line changes nothing; every bad line "
        "is reported with its number.",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--opt-out-list", action="store_true", help="the file lists opted-out people, one a line"
    )
    imp.add_argument("--purpose", help="with --opt-out-list: the purpose code the opt-outs apply to")
    imp.add_argument("--source", help="with --opt-out-list: where the list came from")
    imp.add_argument("--at", help="with --opt-out-list: when the choices were made (default now)")
    _config_arg(imp)
    imp.set_defaults(func=_consent_import)
    for action, status, words in (
        ("set", None, "record a person's consent choice for a purpose"),
        ("withdraw", ConsentStatus.WITHDRAWN, "record that a person withdrew consent for a purpose"),
    ):
        p = cmds.add_parser(action, help=words, description=words[0].upper() + words[1:] + ".")
        p.add_argument("person", help="the person identifier (the datasets' person column)")
        p.add_argument("--purpose", required=True, help="the purpose code, as agreements name it")
        if status is None:
            p.add_argument("--status", required=True, choices=[s.value for s in ConsentStatus])
        p.add_argument("--source", default="operator", help="where the choice came from (default operator)")
        p.add_argument("--at", help="when the person made the choice (default now)")
        _config_arg(p)
        p.set_defaults(func=_consent_set, fixed_status=status)
    show = cmds.add_parser(
        "show",
        help="a person's current choices and full history",
        description="Print a person's current consent choice for each purpose, then every record ever "
        "made about them, oldest first, with its source and when it was recorded.",
    )
    show.add_argument("person")
    _config_arg(show)
    show.set_defaults(func=_consent_show)
    tell = cmds.add_parser(
        "transparency",
        help="what a person's records may be used for, and how many queries ran under each agreement",
        description="For a citizen: each agreement of this node, whether their records may be used for "
        "its purpose under their current consent choices, and how many queries ran under it. Never "
        "any results.",
    )
    tell.add_argument("person")
    _config_arg(tell)
    tell.set_defaults(func=_consent_transparency)


def _consent_import(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    if args.opt_out_list:
        if not args.purpose or not args.source:
            raise ConfigError(
                "--opt-out-list needs --purpose CODE and --source TEXT (where the list came from)"
            )
        records = parse_opt_out_list(args.file, args.purpose, args.source, _time(args.at))
    else:
        if args.purpose or args.source or args.at:
            raise ConfigError(
                "--purpose, --source and --at go with --opt-out-list; a CSV carries them on every line"
            )
        records = parse_consent_csv(args.file)
    register = ConsentRegister(config.consent_path)
    try:
        added = register.add(records, datetime.now(UTC))
    finally:
        register.close()
    purposes = sorted({r.purpose for r in records})
    print(f"{args.file}: {added} consent record(s) imported for {', '.join(purposes) or 'no purpose'}")
    _warn_unused_purposes(config, set(purposes))
    return 0


def _consent_set(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    status = args.fixed_status or ConsentStatus(args.status)
    record = ConsentRecord(args.person, args.purpose, status, _time(args.at), args.source)
    register = ConsentRegister(config.consent_path)
    try:
        register.add([record], datetime.now(UTC))
        current = register.current(args.person).get(args.purpose)
    finally:
        register.close()
    print(f"recorded: {status.value} for purpose {args.purpose}")
    if current is not status:
        print(
            "note: a later-dated record stays this person's current choice "
            f"({current.value if current else '?'}); "
            "this one is kept in their history"
        )
    _warn_unused_purposes(config, {args.purpose})
    return 0


def _warn_unused_purposes(config: NodeConfig, purposes: set[str]) -> None:
    """Say so when no agreement of this node names a purpose the records are for (a typo would
    otherwise leave the choices unapplied without a word)."""
    try:
        used = {a.purpose_code for a in _agreements(config).values()}
    except ConfigError as err:
        print(
            f"note: the agreements could not be read to check the purposes ({err.message})", file=sys.stderr
        )
        return
    for purpose in sorted(purposes - used):
        close = [u for u in used if u.lower() == purpose.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(
            f"warning: no agreement of node {config.name} has purpose {purpose}{hint}; these choices apply "
            "to no query until one does",
            file=sys.stderr,
        )


def _consent_show(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    register = ConsentRegister(config.consent_path)
    try:
        current, history = register.current(args.person), register.history(args.person)
    finally:
        register.close()
    if not history:
        print("no consent records for this person (opt-out purposes count them; opt-in purposes do not)")
        return 0
    print("current choices:")
    for purpose, status in sorted(current.items()):
        print(f"  {purpose}: {status.value}")
    print("history (oldest first):")
    for record, recorded in history:
        print(
            f"  {record.timestamp.isoformat()} {record.purpose} {record.status.value} "
            f"(source: {record.source}; recorded {recorded.isoformat(timespec='seconds')})"
        )
    return 0


def _consent_transparency(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    agreements = _agreements(config)
    register = ConsentRegister(config.consent_path)
    try:
        current = register.current(args.person)
    finally:
        register.close()
    usage = read_usage(config)
    print(f"At {config.name}, under the current consent choices of this person:")
    if not agreements:
        print("  no data-sharing agreement: their records are not used for any shared analysis")
    for line in transparency(agreements, current, usage):
        a = line.agreement
        choice = line.choice.value if line.choice is not None else "no choice recorded"
        verdict = "MAY be used" if line.used else "are NOT used"
        queries = "not recorded" if line.queries is None else str(line.queries)
        print(
            f'- {a.id} "{a.title}": their records {verdict} for purpose {a.purpose_code} '
            f"({a.purpose}); consent is {a.consent}, their choice: {choice}; valid {a.valid_from} to "
            f"{a.valid_until}; queries answered under it so far: {queries}"
        )
    return 0


# ---- accord register ----------------------------------------------------------------------------


def register_register(sub: Any) -> None:
    parser = sub.add_parser(
        "register",
        help="publish the authority's public register of agreements",
        description="Publish the public register of this node's data-sharing agreements and their use.",
    )
    cmds = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    pub = cmds.add_parser(
        "publish",
        help="write the register as a static HTML page and as JSON",
        description="Write DIR/index.html (a static page, readable on a phone, no JavaScript) and "
        "DIR/register.json: each agreement's parties, purpose, lawful basis, fields shared and how, "
        "validity and review dates, caps, and its use to date (queries answered and refused, epsilon "
        "spent). No results, no person data.",
    )
    pub.add_argument("--out", required=True, type=Path, help="the folder to write into")
    _config_arg(pub)
    pub.set_defaults(func=_register_publish)


def _register_publish(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    now = datetime.now(UTC)
    entries = build_register(_agreements(config), read_usage(config), now.date())
    for path in write_register(args.out, config.name, entries, now):
        print(f"wrote {path}")
    return 0


# ---- accord agreement ---------------------------------------------------------------------------


def register_agreement(sub: Any) -> None:
    parser = sub.add_parser(
        "agreement",
        help="check a node's agreements, or draft a new one",
        description="Check the agreements a node would load, or draft one from its datasets.",
    )
    cmds = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = cmds.add_parser(
        "check",
        help="load every agreement naming this node and report what each grants",
        description="Load and check every agreement of [agreements] dir that names this node, "
        "against its datasets, exactly as the node does at start-up.",
    )
    _config_arg(check)
    check.set_defaults(func=_agreement_check)
    draft = cmds.add_parser(
        "draft",
        help="print a draft agreement sharing every declared field, to narrow by hand",
        description="Print a draft agreement TOML sharing every field of this node's datasets in every "
        "way it supports. Remove what was not agreed, complete the purpose and lawful basis, then put "
        "it in the agreements folder.",
    )
    draft.add_argument("--id", required=True, help="the agreement's id, e.g. dsa-2027-001")
    draft.add_argument("--analyst", action="append", default=[], help="an analyst it covers (repeatable)")
    _config_arg(draft)
    draft.set_defaults(func=_agreement_draft)


def _agreement_check(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    gate = build_gate(config)
    today = datetime.now(UTC).date()
    for agreement in sorted(gate.agreements.values(), key=lambda a: a.id):
        problem = agreement.in_force(today)
        shared = "; ".join(
            f"{name}: {', '.join(sorted(g.fields)) or 'rows only'}"
            for name, g in sorted(agreement.datasets.items())
        )
        print(f"{agreement.id} ({agreement.source}): {problem or 'in force'}; shares {shared}")
    print(f"{config.agreements_dir}: {len(gate.agreements)} agreement(s) for node {config.name}: OK")
    return 0


def _agreement_draft(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    schemas = {d.schema.name: d.schema for d in config.datasets}
    sys.stdout.write(draft_agreement(args.id, config.name, schemas, tuple(args.analyst)))
    return 0


# ---- accord node budget -------------------------------------------------------------------------


def register_node_budget(cmds: Any) -> None:
    budget = cmds.add_parser(
        "budget",
        help="every analyst's spent and remaining budget under every agreement (operators)",
        description="Read the node's budget ledger (also while the node runs) and print, for every "
        "agreement and analyst, the epsilon spent and remaining against the agreement's caps.",
    )
    budget.add_argument("--format", choices=("table", "json"), default="table")
    _config_arg(budget)
    budget.set_defaults(func=_node_budget)


def budget_lines(config: NodeConfig) -> list[BudgetLine]:
    """Every (agreement, analyst) line of the node's ledger, and a line for every analyst an
    agreement covers who has spent nothing yet."""
    agreements = _agreements(config)
    if config.state.backend != "sqlite" or config.state.path is None:
        raise ConfigError(f"node {config.name} keeps its state in memory: its ledger is not readable here")
    analysts = {(a.id, who) for a in agreements.values() for who in a.analysts}
    if not config.state.path.exists():
        return [
            budget_line(agreements[a], who, Spent(Epsilon.zero(), Epsilon.zero()))
            for a, who in sorted(analysts)
        ]
    with StateReader(config.state.path, config.name) as reader:
        # an agreement no longer held keeps its spending in the state file, but has no caps to show
        analysts |= {
            (line.agreement, line.analyst) for line in reader.ledger() if line.agreement in agreements
        }
        return [budget_line(agreements[a], who, reader.spent(a, who)) for a, who in sorted(analysts)]


def _node_budget(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    lines = budget_lines(config)
    out = budget_json({config.name: lines}) if args.format == "json" else budget_table({config.name: lines})
    sys.stdout.write(out)
    return 0
