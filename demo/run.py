"""``accord demo``: a whole federation on this machine, started the way an operator would.

It creates a development PKI (``accord pki init``), writes a synthetic population for a county
and two districts with their data-sharing agreements (``demo/agreements``), imports each
authority's consent files (``accord consent import``: a national opt-out list, the county's
service-review sign-ups), starts each node and the coordinator as separate ``accord ... serve``
processes on loopback, asks a handful of questions under the agreements through the analyst
client, shows a preview, refusals and the analyst's budget, stops one node to show a partial
answer, and shuts everything down, leaving nothing running.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from accord.coordinator.client import AccordClient
from accord.coordinator.explanation import format_explanation
from accord.coordinator.table import format_release
from accord.demo.datasets import NODES
from accord.demo.layout import (
    ANALYST,
    AUDIT_SECONDS,
    AUDITOR,
    CERTS,
    COORDINATOR,
    HOST,
    HOUSING_AGREEMENT,
    SERVICE_AGREEMENT,
    DemoLayout,
    write_demo_federation,
)
from accord.demo.processes import Process, accord_command, free_ports, spawn
from accord.errors import AccordError, ConfigError
from accord.policies.pki import CA_CERT, leaf_paths
from accord.query.budget_report import budget_table
from accord.rpc.transport import TlsFiles

__all__ = [
    "QUESTIONS",
    "START_TIMEOUT",
    "register",
    "run_demo",
]


START_TIMEOUT = 120.0

QUESTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "How many records does each authority hold, by district?",
        "SELECT district, COUNT(*) AS records FROM citizens GROUP BY district",
        HOUSING_AGREEMENT,
    ),
    (
        "Households claiming housing benefit with a child in social care, by ward (small wards suppressed)",
        "SELECT ward, COUNT(*) AS households FROM citizens "
        "WHERE claims_housing_benefit = TRUE AND child_in_social_care = TRUE GROUP BY ward",
        HOUSING_AGREEMENT,
    ),
    (
        "Mean income by age band",
        "SELECT age_band, AVG(income) AS mean_income, COUNT(*) AS people FROM citizens GROUP BY age_band",
        HOUSING_AGREEMENT,
    ),
    (
        "Total household members of council-tax-support claimants aged 65+",
        "SELECT SUM(household_size) AS members FROM citizens "
        "WHERE claims_council_tax_support = TRUE AND age BETWEEN 65 AND 100",
        HOUSING_AGREEMENT,
    ),
    (
        "County service contacts by service, residents who opted in (at most 3 contacts per person)",
        "SELECT service, COUNT(*) AS contacts, AVG(duration_minutes) AS mean_minutes "
        "FROM service_contacts GROUP BY service",
        SERVICE_AGREEMENT,
    ),
)
REFUSED: tuple[tuple[str, str, str], ...] = (
    ("Listing people (row-level data)", "SELECT person_id, income FROM citizens", HOUSING_AGREEMENT),
    ("Total income (the agreement allows means of income only)", "SELECT SUM(income) FROM citizens",
     HOUSING_AGREEMENT),
    ("Adult social care (a field the agreement does not share)",
     "SELECT COUNT(*) FROM citizens WHERE adult_social_care = TRUE", HOUSING_AGREEMENT),
)  # fmt: skip


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="accord-demo-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _pki(root: Path) -> None:
    """A development PKI in ``root/certs`` (kept if it is already there: ``--dir`` run again)."""
    if (root / CERTS / CA_CERT).exists():
        _say(f"certificates: reusing the development CA in {root / CERTS}")
        return
    command = ["pki", "init", "--dir", str(root / CERTS), "--coordinator", COORDINATOR, "--analyst", ANALYST]
    command += ["--auditor", AUDITOR]
    for n in NODES:
        command += ["--node", n]
    subprocess.run(accord_command(*command), check=True, cwd=root, stdout=subprocess.DEVNULL)
    _say(
        f"certificates: a development CA, the coordinator, {len(NODES)} nodes, analyst {ANALYST!r} "
        f"and auditor {AUDITOR!r}"
    )


def run_demo(people: int, epsilon: str, workdir: Path | None, seed: int) -> int:
    processes: list[Process] = []
    with _workdir(workdir) as root:
        try:
            _say(f"== Accord demo in {root}")
            _pki(root)
            started = time.perf_counter()
            ports = dict(zip((*NODES, COORDINATOR), free_ports(len(NODES) + 1), strict=True))
            layout = write_demo_federation(root, people_per_authority=people, seed=seed, ports=ports)
            _say(
                f"synthetic population written in {time.perf_counter() - started:.1f} s "
                f"({people:,}+ people per authority); agreements in {root / 'agreements'}"
            )
            _import_consent(layout, root)
            for n in NODES:
                command = accord_command("node", "serve", "--config", str(layout.node_configs[n]))
                processes.append(spawn(n, command, root))
            for proc in processes:
                port = proc.wait_for_port(START_TIMEOUT)
                _say(f"node {proc.name} serving on {HOST}:{port} (pid {proc.popen.pid})")
            command = accord_command("coordinator", "serve", "--config", str(layout.coordinator_config))
            coord = spawn(COORDINATOR, command, root)
            processes.append(coord)
            coord_port = coord.wait_for_port(START_TIMEOUT)
            _say(f"coordinator serving on {HOST}:{coord_port}\n")
            cert, key = leaf_paths(root / CERTS, "analyst", ANALYST)
            tls = TlsFiles(cert, key, root / CERTS / CA_CERT)
            with AccordClient(f"{HOST}:{coord_port}", tls) as client:
                _say(f"== Preview before spending (accord query --explain), under {HOUSING_AGREEMENT}:")
                preview = client.explain(
                    QUESTIONS[1][1], epsilon, agreement=HOUSING_AGREEMENT, target_half_width=5
                )
                _say(format_explanation(preview, "table", 5))
                for title, sql, agreement in QUESTIONS:
                    _ask(client, title, sql, epsilon, agreement)
                _say("== Queries Accord refuses:")
                for title, sql, agreement in REFUSED:
                    _ask(client, title, sql, epsilon, agreement)
                _say("== The analyst's privacy budget at every node (accord budget):")
                lines, unreachable = client.budget()
                _say(budget_table(lines, unreachable))
                _audit(root, layout)
                _say("== Stopping node district-b (SIGKILL):")
                victim = next(p for p in processes if p.name == "district-b")
                victim.stop(signal.SIGKILL)
                _ask(
                    client,
                    "Records by district, one node down (secure aggregation needs every holder: it fails "
                    "cleanly, nothing is released, and the same query id can be retried)",
                    QUESTIONS[0][1],
                    epsilon,
                    HOUSING_AGREEMENT,
                )
            _say("== Shutting down")
            if workdir is not None:
                _say(
                    f"The configs in {root} can be served again as they are, e.g. "
                    f"`accord node serve --config {layout.node_configs[NODES[0]]}`"
                )
            return 0
        finally:
            for proc in reversed(processes):
                proc.stop()
            still = [p.name for p in processes if p.popen.poll() is None]
            if still:
                _say(f"warning: still running: {', '.join(still)}")


def _audit(root: Path, layout: DemoLayout) -> None:
    """What an auditor does with county's log: fetch it (auditor certificate), verify it offline
    requiring one district's cosignature, check it against the agreements, report."""
    node = NODES[0]
    _say(f"== The auditor {AUDITOR!r} fetches {node}'s audit log, verifies it, checks it (accord audit):")
    time.sleep(3 * AUDIT_SECONDS)  # let the districts witness the latest checkpoint
    cert, key = leaf_paths(root / CERTS, "auditor", AUDITOR)
    folder = root / "audit" / f"{node}-log"
    show = accord_command("node", "audit-key", "--config", str(layout.node_configs[node]))
    keys = dict(
        line.split(":", 1)
        for line in subprocess.run(show, capture_output=True, text=True, check=True).stdout.splitlines()
    )
    witnesses: list[str] = []
    for other in NODES[1:]:
        shown = accord_command("node", "audit-key", "--config", str(layout.node_configs[other]))
        out = subprocess.run(shown, capture_output=True, text=True, check=True).stdout
        witnesses += [
            "--witness",
            dict(line.split(":", 1) for line in out.splitlines())["witness key"].strip(),
        ]
    county_key = keys["checkpoint key"].strip()
    steps = [
        [
            "audit", "fetch", str(folder), "--node", node, "--address", f"{HOST}:{layout.ports[node]}",
            "--key", county_key, "--cert", str(cert), "--tls-key", str(key),
            "--ca", str(root / CERTS / CA_CERT),
        ],
        ["audit", "verify", str(folder), "--key", county_key, *witnesses, "--quorum", "1"],
        ["audit", "check", str(folder), "--agreements", str(layout.root / "agreements")],
        ["audit", "report", str(folder), "--agreements", str(layout.root / "agreements")],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(accord_command(*step), capture_output=True, text=True, cwd=root)
        _say(f"$ accord {' '.join(step[:2])} ...")
        _say((done.stdout + done.stderr).rstrip())
    _say()


def _import_consent(layout: DemoLayout, root: Path) -> None:
    """Each operator imports their consent files into their node's register, as on the command line."""
    for node in layout.nodes:
        for arguments in layout.consent_imports.get(node, ()):
            command = accord_command(
                "consent", "import", *arguments, "--config", str(layout.node_configs[node])
            )
            done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ConfigError(f"importing consent at node {node} failed: {done.stderr.strip()}")
            _say(f"{node}: {done.stdout.strip()}")


def _ask(client: AccordClient, title: str, sql: str, epsilon: str, agreement: str) -> None:
    _say(f"-- {title}\n   {sql}   (epsilon {epsilon} per node, agreement {agreement})")
    try:
        started = time.perf_counter()
        release = client.query_release(sql, epsilon, timeout=60, agreement=agreement)
        took = time.perf_counter() - started
        _say(format_release(release, "table").rstrip())
        _say(f"({took * 1000:.0f} ms)\n")
    except AccordError as err:
        _say(f"refused: {err.message}\n")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a local three-authority federation and print some answers",
        description="Create a development PKI and a synthetic county and two districts, serve them as a "
        "real federation on this machine (separate processes, mutual TLS), ask some questions, show a "
        "refusal and a partial answer, then stop everything. --dir keeps the files, which can be "
        "served again as they are.",
    )
    parser.add_argument("--people", type=int, default=100_000, help="people per authority (default 100,000)")
    parser.add_argument("--epsilon", default="0.5", help="epsilon per query per node (default 0.5)")
    parser.add_argument("--dir", type=Path, default=None, help="keep the files here instead of a temp dir")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic population")
    parser.set_defaults(func=lambda a: run_demo(a.people, a.epsilon, a.dir, a.seed))
