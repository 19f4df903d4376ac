"""``accord pki``: create a development federation PKI, issue more certificates, show one."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from accord.errors import AccordError, ConfigError
from accord.policies.identity import ROLES, identity_from_certificate, validity_problem
from accord.policies.pki import (
    CRL_DAYS,
    DEFAULT_DAYS,
    init_federation,
    issue,
    leaf_paths,
)
from accord.policies.pki_crl import refresh_crl, revoke

__all__ = [
    "register",
]


def register(subparsers: Any) -> None:
    """Add ``accord pki`` and its subcommands to the ``accord`` dispatcher."""
    parser = subparsers.add_parser(
        "pki",
        help="development certificates for a federation",
        description="A development certificate authority for one federation and the certificates of "
        "its parties (roles: node, coordinator, analyst, auditor). Production federations use their "
        "organisation's CA; see the README.",
    )
    sub = parser.add_subparsers(dest="pki_command", required=True, metavar="SUBCOMMAND")

    init = sub.add_parser(
        "init",
        help="create a CA and certificates for a coordinator, nodes, analysts and auditors",
        description="Create the federation's CA and the certificates of one coordinator and the named "
        "nodes, analysts and auditors.",
    )
    init.add_argument(
        "--dir", type=Path, required=True, help="folder to write ca.pem, ca.key and <role>s/<name>.*"
    )
    init.add_argument("--coordinator", default="coordinator", help="coordinator name (default coordinator)")
    init.add_argument("--node", action="append", default=[], metavar="NAME", help="a node name (repeatable)")
    init.add_argument(
        "--analyst", action="append", default=[], metavar="NAME", help="an analyst name (repeatable)"
    )
    init.add_argument(
        "--auditor", action="append", default=[], metavar="NAME", help="an auditor name (repeatable)"
    )
    init.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})"
    )
    init.add_argument(
        "--force", action="store_true", help="replace an existing CA (invalidates its certificates)"
    )
    init.set_defaults(func=_init)

    iss = sub.add_parser(
        "issue",
        help="issue another certificate from the existing CA in --dir",
        description="Issue one more certificate (or a new one for a party whose key was lost) from the "
        "CA in --dir.",
    )
    iss.add_argument("--dir", type=Path, required=True, help="folder holding ca.pem and ca.key")
    iss.add_argument("--role", choices=ROLES, required=True)
    iss.add_argument("--name", required=True)
    iss.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})"
    )
    iss.add_argument(
        "--keep-previous",
        action="store_true",
        help="do not revoke the certificate this one replaces (for a renewal that overlaps the old one); "
        "by default a replaced certificate is revoked, so a lost or stolen key stops working",
    )
    iss.set_defaults(func=_issue)

    rev = sub.add_parser(
        "revoke",
        help="revoke a certificate: add it to the federation's CRL (DIR/crl.pem)",
        description="Add a certificate to the certificate revocation list DIR/crl.pem, signed by the CA "
        "in --dir. Copy the CRL to every node and the coordinator (their [tls] crl setting): they "
        "reload it within a second of it changing and refuse the revoked party from its next call.",
    )
    rev.add_argument("--dir", type=Path, required=True, help="folder holding ca.pem and ca.key")
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", type=Path, help="the certificate file to revoke")
    which.add_argument(
        "--party",
        metavar="ROLE/NAME",
        help="revoke the certificate issued in --dir for this party, e.g. node/county",
    )
    rev.set_defaults(func=_revoke)

    crl = sub.add_parser(
        "crl",
        help="sign the revocation list anew before its next update passes",
        description="Sign DIR/crl.pem anew: the same revocations, the next number, and a next update "
        "--days from now. Servers refuse to start with a CRL past its next update (it may be an old "
        "copy put back), so run this regularly (e.g. weekly) and copy the result to every server.",
    )
    crl.add_argument("--dir", type=Path, required=True, help="folder holding ca.pem, ca.key and crl.pem")
    crl.add_argument("--days", type=int, default=CRL_DAYS, help=f"validity in days (default {CRL_DAYS})")
    crl.set_defaults(func=_refresh_crl)

    show = sub.add_parser(
        "show",
        help="print the identity, validity and issuer of a certificate",
        description="Print a certificate's Accord identity (role and name), validity and issuer.",
    )
    show.add_argument("file", type=Path, help="a PEM certificate")
    show.set_defaults(func=_show)


def _init(args: argparse.Namespace) -> int:
    fed = init_federation(
        args.dir,
        coordinator=args.coordinator,
        nodes=args.node,
        analysts=args.analyst,
        days=args.days,
        force=args.force,
        auditors=args.auditor,
    )
    print(f"CA certificate: {fed.ca_cert}")
    print(f"CA private key: {fed.ca_key} (keep it off the servers)")
    for leaf in fed.issued:
        print(f"{leaf.identity.role} {leaf.identity.name}: {leaf.cert} {leaf.key}")
    return 0


def _issue(args: argparse.Namespace) -> int:
    previous, _ = leaf_paths(args.dir, args.role, args.name)
    replaced = previous.exists() and not args.keep_previous
    if replaced:  # before the file is replaced: its serial would be lost
        revoke(args.dir, previous)
    leaf = issue(args.dir, args.dir, args.role, args.name, days=args.days)
    if replaced:
        print(f"revoked the certificate it replaces; copy {args.dir / 'crl.pem'} to every server")
    print(f"{leaf.identity.role} {leaf.identity.name}: {leaf.cert} {leaf.key}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    path: Path = args.cert
    if path is None:
        role, _, name = str(args.party).partition("/")
        if role not in ROLES or not name:
            raise ConfigError(
                f"--party must be ROLE/NAME with ROLE one of {', '.join(ROLES)}, not {args.party!r}"
            )
        path, _ = leaf_paths(args.dir, role, name)
        if not path.exists():
            raise ConfigError(f"no certificate issued for {args.party} in {args.dir} ({path} is missing)")
    cert, crl = revoke(args.dir, path)
    try:
        who = str(identity_from_certificate(cert))
    except AccordError:
        who = cert.subject.rfc4514_string()
    print(f"revoked {who} (serial {cert.serial_number:x}); CRL written to {crl}")
    print("copy it to every node and the coordinator ([tls] crl); they reload it within a second")
    return 0


def _show(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a PEM X.509 certificate") from None
    try:
        identity = identity_from_certificate(cert)
        print(f"role:       {identity.role}")
        print(f"name:       {identity.name}")
    except AccordError as err:
        print(f"identity:   none ({err.message})")
    print(f"subject:    {cert.subject.rfc4514_string()}")
    print(f"issuer:     {cert.issuer.rfc4514_string()}")
    print(f"not before: {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    print(f"not after:  {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    problem = validity_problem(cert, datetime.now(UTC))
    print(f"status:     {'valid' if problem is None else problem}")
    return 0


def _refresh_crl(args: argparse.Namespace) -> int:
    path = refresh_crl(args.dir, args.days)
    print(f"CRL written to {path}, valid for {args.days} day(s); copy it to every node and the coordinator")
    return 0
