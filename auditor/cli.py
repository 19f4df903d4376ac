"""``accord audit``: an auditor's commands.

- ``fetch``: pull a node's log into a directory, incrementally (over mTLS, auditor certificate);
- ``verify``: check the directory offline (signatures, cosignatures, roots, consistency);
- ``check``: replay every decision against the agreements, listing any answer they did not allow;
- ``report``: a summary per agreement and analyst (table, CSV or JSON) and a chart of budget use.

Exit status: 0 when all is well, 1 when verify or check found a problem, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from accord.auditor.fetch import fetch
from accord.errors import ConfigError, printable
from accord.policies.audit_check import check_entries, load_agreements_for_check
from accord.policies.audit_dir import AuditDir
from accord.policies.audit_entry import AuditEntry, EntryError, decode
from accord.policies.audit_report import render_csv, render_json, render_table, summarise, write_chart
from accord.policies.audit_verify import verify_dir
from accord.policies.note import ALG_COSIGNATURE, NoteError, NoteVerifier
from accord.rpc.transport import TlsFiles

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "audit",
        help="fetch, verify, check and report on a node's audit log",
        description="An auditor's tools: fetch a node's tamper-evident log, verify it offline, check "
        "every answered query against the agreements, and report on budget use.",
    )
    cmds = parser.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    f = cmds.add_parser(
        "fetch",
        help="pull a node's log into DIR (incrementally)",
        description="Fetch node NODE's checkpoints and the entries DIR lacks, checking each batch against "
        "the node's signed checkpoint before keeping it. A rollback or a fork is refused and kept as "
        "evidence (exit 1).",
    )
    f.add_argument("directory", type=Path, metavar="DIR")
    f.add_argument("--node", required=True, help="the node's certificate name")
    f.add_argument("--address", required=True, help="the node's HOST:PORT")
    f.add_argument(
        "--key", help="the node's checkpoint key (a vkey, or a file holding it); needed the first time"
    )
    f.add_argument("--cert", type=Path, required=True, help="your auditor certificate (PEM)")
    f.add_argument("--tls-key", type=Path, required=True, help="your auditor private key (PEM)")
    f.add_argument("--ca", type=Path, required=True, help="the federation CA certificate (PEM)")
    f.set_defaults(func=_fetch)

    v = cmds.add_parser(
        "verify",
        help="verify DIR offline",
        description="Check DIR offline: every checkpoint's signature and cosignatures, no two roots for a "
        "size, the root recomputed from the entries at every checkpoint, nothing truncated; the first bad "
        "entry is named. Exit 1 if anything is wrong.",
    )
    v.add_argument("directory", type=Path, metavar="DIR")
    v.add_argument(
        "--key", help="the node's checkpoint key, as its operator gave it (default: the one in DIR)"
    )
    v.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="VKEY",
        help="a witness's cosignature key (repeatable; a vkey or a file holding one)",
    )
    v.add_argument("--quorum", type=int, help="cosignatures a checkpoint needs (default: every --witness)")
    v.set_defaults(func=_verify)

    c = cmds.add_parser(
        "check",
        help="replay every decision in DIR against the agreements",
        description="Replay every answered query against the agreements (parties, dates, purpose, "
        "fields, uses, per-query and total caps); list each answer they did not allow. Exit 1 if any.",
    )
    c.add_argument("directory", type=Path, metavar="DIR")
    c.add_argument("--agreements", type=Path, required=True, metavar="AGREEMENTS_DIR")
    c.set_defaults(func=_check)

    r = cmds.add_parser(
        "report",
        help="summarise DIR per agreement and analyst",
        description="Queries answered, refused (by reason) and epsilon spent per agreement and analyst, "
        "against the caps when --agreements is given.",
    )
    r.add_argument("directory", type=Path, metavar="DIR")
    r.add_argument("--agreements", type=Path, metavar="AGREEMENTS_DIR")
    r.add_argument("--format", choices=("table", "csv", "json"), default="table")
    r.add_argument("--chart", type=Path, metavar="PNG", help="also draw budget use over time into this PNG")
    r.set_defaults(func=_report)


def _vkey(text: str, alg: int | None = None) -> NoteVerifier:
    path = Path(text)
    value = path.read_text(encoding="utf-8").strip() if path.is_file() else text.strip()
    try:
        verifier = NoteVerifier.from_vkey(value)
    except NoteError as err:
        raise ConfigError(f"{err}; pass the key exactly as `accord node audit-key` printed it") from None
    if alg is not None and verifier.alg != alg:
        raise ConfigError(
            f"{verifier.name}: this is not a witness (cosignature) key; use the 'witness key' line"
        )
    return verifier


def _progress(what: str) -> Any:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int = 0) -> None:
        of = f" of {total:,}" if total else ""
        print(f"\r{what} {done:,}{of} entries", end="", file=sys.stderr, flush=True)

    return show


def _fetch(args: argparse.Namespace) -> int:
    key = None
    if args.key:
        key = _vkey(args.key).vkey()
    result = fetch(
        args.node,
        args.address,
        TlsFiles(args.cert, args.tls_key, args.ca),
        args.directory,
        key,
        _progress("fetched"),
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"{args.directory}: {result.size:,} entries ({result.new_entries:,} new), "
        f"{result.checkpoints} checkpoint(s) listed by {args.node}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    AuditDir(args.directory).require()
    key = _vkey(args.key)
    witnesses = list({w.vkey(): w for w in (_vkey(w, ALG_COSIGNATURE) for w in args.witness)}.values())
    quorum = len(witnesses) if args.quorum is None else args.quorum
    if not 0 <= quorum <= len(witnesses):
        raise ConfigError(f"--quorum must be between 0 and the {len(witnesses)} --witness key(s) given")
    report = verify_dir(args.directory, key, witnesses, quorum, _progress("verified"))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    accepted = [c for c in report.checkpoints if c.accepted]
    for note in report.notes:
        print(f"note: {note}")
    if not report.ok:
        if report.first_bad_entry is not None:
            print(f"FAILED: the first bad entry is entry {report.first_bad_entry}")
        else:
            print("FAILED")
        for problem in report.problems:
            print(f"  {problem}")
        return 1
    print(
        f"OK: {report.entries:,} entries; {len(report.checkpoints)} checkpoint(s), {len(accepted)} accepted "
        f"(quorum {quorum} of {len(witnesses)} witness(es)); verified up to {report.verified_size:,} entries"
    )
    return 0


def _entries(folder: AuditDir) -> Iterator[tuple[int, AuditEntry]]:
    for index, line in enumerate(folder.lines()):
        try:
            yield index, decode(line.rstrip(b"\n"))
        except EntryError as err:
            raise ConfigError(
                f"entry {index} of {folder.entries_path} is not valid ({err}); run accord audit verify"
            ) from None


def _check(args: argparse.Namespace) -> int:
    folder = AuditDir(args.directory)
    folder.require()
    agreements = load_agreements_for_check(args.agreements)
    show = _progress("checked")
    result = check_entries(_entries(folder), agreements, progress=show, node=folder.info().node)
    if show is not None:
        print(file=sys.stderr)
    for w in result.warnings:
        print(printable(f"warning: entry {w.index}: {w.message} [{w.code}]"))
    for v in result.violations:
        who = f"query {v.query_id} of {v.analyst} under {v.agreement}"
        print(printable(f"NOT ALLOWED: entry {v.index}: {who}: {v.message} [{v.rule}]"))
    print(
        f"{result.entries:,} entries, {result.decisions:,} decisions, {result.answered:,} answers checked: "
        f"{len(result.violations)} not allowed, {len(result.warnings)} warning(s)"
    )
    return 0 if result.ok else 1


def _report(args: argparse.Namespace) -> int:
    folder = AuditDir(args.directory)
    folder.require()
    agreements = load_agreements_for_check(args.agreements) if args.agreements else None
    report = summarise(_entries(folder), agreements)
    render = {"table": render_table, "csv": render_csv, "json": render_json}[args.format]
    print(render(report), end="")
    if args.chart is not None:
        write_chart(report, args.chart)
        print(f"chart: {args.chart}", file=sys.stderr)
    return 0
