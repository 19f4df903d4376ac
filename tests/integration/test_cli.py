"""The ``accord`` command line, used the way an operator and an analyst use it.

A small federation runs as separate processes: ``accord pki init`` makes the certificates, the
synthetic county/district data is written with :func:`accord.demo.population.write_demo_federation`,
and each node and the coordinator is an ``accord node serve`` / ``accord coordinator serve``
process started (and watched for its "listening on port N" line) with the same helpers as
``accord demo``. Analyst commands (``accord query``, ``accord catalog``) run as subprocesses too,
so what is tested is exactly what a user types: arguments, exit status, stdout and stderr.

Every process started here is stopped in the fixtures' ``finally`` blocks, whatever happens.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from accord.coordinator.client import AccordClient
from accord.coordinator.config import write_coordinator_config
from accord.demo.datasets import NODES
from accord.demo.layout import (
    HOUSING_AGREEMENT,
    DemoLayout,
    demo_coordinator_config,
    demo_node_config,
    write_demo_federation,
)
from accord.demo.processes import Process, spawn
from accord.node.config import StateConfig, load_node_config
from accord.node.config_writer import write_node_config
from accord.rpc.transport import TlsFiles
from tests.integration import processes
from tests.integration.commands import ACCORD, RUN_TIMEOUT, _env, accord

PEOPLE = 2000
EPSILON = "0.5"
START_TIMEOUT = 60.0
SQL = "SELECT district, COUNT(*) AS people, AVG(income) AS mean_income FROM citizens GROUP BY district"
DISTRICTS = ("Northbrook", "Southdale")


def _stop_all(processes: list[Process]) -> None:
    """SIGTERM each server (graceful), SIGKILL any that does not stop; never raises."""
    for proc in reversed(processes):
        try:
            proc.stop(signal.SIGTERM, timeout=15)
        finally:
            if proc.popen.poll() is None:  # pragma: no cover - stop() already kills on timeout
                proc.popen.kill()
                proc.popen.wait(5)


def _start(name: str, args: list[str], root: Path, processes: list[Process]) -> Process:
    proc = spawn(name, [*ACCORD, *args], root)
    processes.append(proc)  # registered before anything can fail, so teardown always sees it
    return proc


@dataclass
class CliFederation:
    root: Path
    home: Path
    layout: DemoLayout
    node_ports: dict[str, int]
    coordinator_port: int

    @property
    def analyst(self) -> TlsFiles:
        certs = self.root / "certs"
        return TlsFiles(certs / "analysts/alice.pem", certs / "analysts/alice.key", certs / "ca.pem")

    def connection(self, port: int | None = None) -> list[str]:
        tls = self.analyst
        address = f"127.0.0.1:{port or self.coordinator_port}"
        return ["--coordinator", address, "--cert", str(tls.cert), "--key", str(tls.key), "--ca", str(tls.ca)]

    def query(self, *args: str, sql: str = SQL, port: int | None = None) -> subprocess.CompletedProcess[str]:
        return accord(
            "query",
            *self.connection(port),
            "--epsilon",
            EPSILON,
            "--agreement",
            HOUSING_AGREEMENT,
            *args,
            sql,
            cwd=self.root,
            home=self.home,
        )

    def true_counts(self) -> dict[str, int]:
        """Records per district over all nodes, straight from the Parquet files (no DP)."""
        totals = dict.fromkeys(DISTRICTS, 0)
        for node in NODES:
            table = pq.read_table(self.layout.data[node]["citizens"], columns=["district"])
            for row in pc.value_counts(table.column("district")).to_pylist():
                totals[row["values"]] += row["counts"]
        return totals


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliFederation]:
    root = tmp_path_factory.mktemp("cli-federation")
    home = tmp_path_factory.mktemp("home")
    processes: list[Process] = []
    try:
        pki = [
            "pki",
            "init",
            "--dir",
            str(root / "certs"),
            "--coordinator",
            "coordinator",
            "--analyst",
            "alice",
        ]
        for node in NODES:
            pki += ["--node", node]
        made = accord(*pki, cwd=root, home=home)
        assert made.returncode == 0, made.stderr
        layout = write_demo_federation(
            root,
            people_per_authority=PEOPLE,
            seed=11,
            ports={**dict.fromkeys(NODES, 0), "coordinator": 0},
            answer_seconds=0.0,
            secure_aggregation=False,  # these tests are of independent noise and partial answers
        )
        for node in NODES:
            _start(node, ["node", "serve", "--config", str(layout.node_configs[node])], root, processes)
        ports = {proc.name: proc.wait_for_port(START_TIMEOUT) for proc in processes}
        config = write_coordinator_config(demo_coordinator_config(root, ports, 0), root / "coordinator.toml")
        coordinator = _start(
            "coordinator", ["coordinator", "serve", "--config", str(config)], root, processes
        )
        port = coordinator.wait_for_port(START_TIMEOUT)
        yield CliFederation(root, home, layout, ports, port)
    finally:
        _stop_all(processes)


# ---- accord query --------------------------------------------------------------------------


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_query_table(federation: CliFederation) -> None:
    """Property: `accord query` (default table format) exits 0 and prints, per district, the value
    (counts as integers) and its 95% interval for each aggregate, then the noise scale of each
    aggregate (for a mean: of its sum and count), the agreement's suppression of small groups (none
    here: every district has hundreds of people) and the contributing nodes; no PARTIAL note."""
    result = federation.query("--format", "table")
    assert result.returncode == 0, result.stderr
    _no_traceback(result)
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "district",
        "people",
        "people",
        "95%",
        "CI",
        "mean_income",
        "mean_income",
        "95%",
        "CI",
    ]
    assert set(lines[1]) <= {"-", " "}
    number, interval = r"-?\d+(?:\.\d+)?", r"\[-?\d+(?:\.\d+)?, -?\d+(?:\.\d+)?\]"
    count, count_interval = r"\d+", r"\[-?\d+, \d+\]"
    for district, line in zip(DISTRICTS, lines[2:4], strict=True):
        assert re.fullmatch(rf"{district}\s+{count}\s+{count_interval}\s+{number}\s+{interval}", line), line
    assert re.fullmatch(
        r"noise scale \(Laplace b combined over the nodes\): people [0-9.e+]+; "
        r"mean_income = sum \(scale [0-9.e+]+\) / count \(scale [0-9.e+]+\)",
        lines[4],
    ), lines[4]
    assert lines[5] == f"suppressed: 0 group(s) of fewer than 10 people (agreement {HOUSING_AGREEMENT})"
    assert lines[6] == "nodes: county, district-a, district-b"
    assert "PARTIAL" not in result.stdout


def test_query_csv(federation: CliFederation) -> None:
    """Property: `--format csv` is valid CSV with, per aggregate, value, 95% CI bounds and noise
    scale columns and a `nodes` column; each value lies in its interval and counts are near the
    truth (noise is small against thousands of records)."""
    result = federation.query("--format", "csv")
    assert result.returncode == 0, result.stderr
    _no_traceback(result)
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert reader.fieldnames == [
        "district",
        *(f"people{s}" for s in ("", "_ci_low", "_ci_high", "_noise_scale")),
        *(f"mean_income{s}" for s in ("", "_ci_low", "_ci_high", "_noise_scale")),
        "suppressed",
        "nodes",
    ]
    rows = list(reader)
    assert all(r["suppressed"] == "False" for r in rows)
    assert [r["district"] for r in rows] == list(DISTRICTS)
    truth = federation.true_counts()
    for row in rows:
        assert row["nodes"] == "county,district-a,district-b"
        for agg in ("people", "mean_income"):
            low, value, high = (float(row[agg + s]) for s in ("_ci_low", "", "_ci_high"))
            assert low <= value <= high, row
            assert float(row[agg + "_noise_scale"]) >= 0
        assert abs(float(row["people"]) - truth[row["district"]]) < 0.1 * truth[row["district"]], (row, truth)
        assert 0 <= float(row["mean_income"]) <= 250_000
    assert "PARTIAL" not in result.stderr


def test_query_json(federation: CliFederation) -> None:
    """Property: `--format json` is one JSON document with the query id, exact epsilon, partial
    flag, contributing nodes, the flat column list and one object per group with value and
    95% CI bounds."""
    result = federation.query("--format", "json", "--query-id", "cli-json-1")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["query_id"] == "cli-json-1"
    assert doc["dataset"] == "citizens"
    assert doc["epsilon"] == "1/2"
    assert doc["partial"] is False and doc["missing"] == {}
    assert doc["contributing_nodes"] == ["county", "district-a", "district-b"]
    assert doc["columns"][0] == "district" and doc["columns"][-1] == "nodes"
    assert [r["district"] for r in doc["rows"]] == list(DISTRICTS)
    for row in doc["rows"]:
        assert set(row) == set(doc["columns"])
        assert row["people_ci_low"] <= row["people"] <= row["people_ci_high"]
        assert row["mean_income_ci_low"] <= row["mean_income"] <= row["mean_income_ci_high"]
        assert row["nodes"] == "county,district-a,district-b"


def test_query_with_profile(federation: CliFederation, tmp_path: Path) -> None:
    """Property: `--profile FILE` alone connects (paths in the profile resolve against its own
    folder, not the working directory), and a retry with the same --query-id prints the very
    same answer (the nodes return their stored releases: no fresh noise)."""
    profile_dir = federation.root / "profiles"
    profile_dir.mkdir(exist_ok=True)
    profile = profile_dir / "alice.toml"
    profile.write_text(
        f'coordinator = "127.0.0.1:{federation.coordinator_port}"\n'
        'cert = "../certs/analysts/alice.pem"\n'
        'key = "../certs/analysts/alice.key"\n'
        'ca = "../certs/ca.pem"\n'
        f'agreement = "{HOUSING_AGREEMENT}"\n',
        encoding="utf-8",
    )
    args = [
        "query",
        "--profile",
        str(profile),
        "--epsilon",
        EPSILON,
        "--format",
        "csv",
        "--query-id",
        "cli-profile-1",
    ]
    first = accord(*args, SQL, cwd=tmp_path, home=federation.home)
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(io.StringIO(first.stdout)))
    assert [r["district"] for r in rows] == list(DISTRICTS)
    assert all(r["people_ci_low"] and r["people_ci_high"] and r["nodes"] for r in rows)
    again = accord(*args, SQL, cwd=tmp_path, home=federation.home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_query_from_a_file_or_standard_input(federation: CliFederation, tmp_path: Path) -> None:
    """Property: `-f FILE` and `-` (standard input) read the query; giving it twice, or not at all,
    is refused with what to write."""
    sql_file = tmp_path / "query.sql"
    sql_file.write_text(SQL + "\n", encoding="utf-8")
    connect = [
        *federation.connection(),
        "--epsilon",
        EPSILON,
        "--agreement",
        HOUSING_AGREEMENT,
        "--format",
        "csv",
    ]
    from_file = accord("query", *connect, "-f", str(sql_file), cwd=tmp_path, home=federation.home)
    assert from_file.returncode == 0, from_file.stderr
    assert [r["district"] for r in csv.DictReader(io.StringIO(from_file.stdout))] == list(DISTRICTS)
    piped = subprocess.run(
        [*ACCORD, "query", *connect, "-"],
        input=SQL,
        cwd=tmp_path,
        env=_env(federation.home),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert piped.returncode == 0, piped.stderr
    assert [r["district"] for r in csv.DictReader(io.StringIO(piped.stdout))] == list(DISTRICTS)
    for extra in (["-f", str(sql_file), SQL], []):
        both = accord("query", *connect, *extra, cwd=tmp_path, home=federation.home)
        assert both.returncode == 2 and "give the query once" in both.stderr


def test_refused_query_exits_nonzero_with_reason_on_stderr(federation: CliFederation) -> None:
    """Property: a query Accord refuses (row-level data) exits non-zero, prints nothing on stdout
    and one line on stderr saying why and what to change; so does a malformed epsilon."""
    result = federation.query(sql="SELECT person_id, income FROM citizens")
    assert result.returncode == 2
    assert result.stdout == ""
    _no_traceback(result)
    assert result.stderr.startswith("accord query: error: ")
    assert "person_id" in result.stderr and "GROUP BY" in result.stderr
    bad = accord(
        "query", *federation.connection(), "--epsilon", "abc", SQL, cwd=federation.root, home=federation.home
    )
    assert bad.returncode == 2 and bad.stdout == ""
    _no_traceback(bad)
    assert "epsilon 'abc' is not a number" in bad.stderr


def test_query_without_connection_details_says_how_to_connect(
    federation: CliFederation, tmp_path: Path
) -> None:
    """Property: with neither a profile nor the four options, `accord query` explains both ways."""
    result = accord("query", "--epsilon", EPSILON, SQL, cwd=tmp_path, home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    _no_traceback(result)
    assert "--profile FILE" in result.stderr and "--coordinator HOST:PORT --cert --key --ca" in result.stderr


# ---- accord catalog ------------------------------------------------------------------------


def test_catalog_lists_datasets_and_nodes(federation: CliFederation) -> None:
    """Property: `accord catalog` lists every node (up) and every dataset with the nodes holding
    it, its person column and its columns' bounds and public groups; `--format json` says the
    same as a document."""
    result = accord("catalog", *federation.connection(), cwd=federation.root, home=federation.home)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for node, port in federation.node_ports.items():
        assert f"node {node}: up" in out and f":{port}" not in out  # no internal addresses
    assert "dataset citizens (nodes: county, district-a, district-b; person column person_id" in out
    assert (
        "dataset service_contacts (nodes: county; person column person_id, at most 3 row(s) per person)"
        in out
    )
    assert re.search(r"income\s+integer\s+bounds \[0, 250000\]", out)
    assert re.search(r"district\s+string\s+groups: Northbrook, Southdale", out)

    result = accord(
        "catalog", "--format", "json", *federation.connection(), cwd=federation.root, home=federation.home
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc["datasets"]) == {"citizens", "service_contacts"}
    citizens = doc["datasets"]["citizens"]
    assert citizens["nodes"] == ["county", "district-a", "district-b"]
    income = next(c for c in citizens["columns"] if c["name"] == "income")
    assert (income["type"], income["lower"], income["upper"]) == ("integer", 0, 250_000)
    assert {n["name"]: n["reachable"] for n in doc["nodes"]} == dict.fromkeys(NODES, True)


# ---- accord node check / coordinator check -------------------------------------------------


def test_node_check_validates_config_and_fails_clearly(federation: CliFederation, tmp_path: Path) -> None:
    """Property: `accord node check` accepts a good config (listing its datasets) and, on a bad
    one, exits non-zero with one stderr line naming the file, the key and the fix."""
    config = federation.layout.node_configs["county"]
    good = accord("node", "check", "--config", str(config), cwd=tmp_path, home=federation.home)
    assert good.returncode == 0, good.stderr
    assert "dataset citizens:" in good.stdout and "dataset service_contacts:" in good.stdout
    assert f"agreements in {federation.root / 'agreements'}: dsa-2026-007, dsa-2026-011" in good.stdout
    assert good.stdout.rstrip().endswith(f"{config}: OK")

    bad_config = federation.root / "county-typo.toml"
    bad_config.write_text(
        config.read_text(encoding="utf-8").replace("privacy_unit =", "privacy_unt =", 1), encoding="utf-8"
    )
    bad = accord("node", "check", "--config", str(bad_config), cwd=tmp_path, home=federation.home)
    assert bad.returncode == 2
    assert bad.stdout == ""
    _no_traceback(bad)
    assert bad.stderr.startswith(
        f"accord node: error: {bad_config}: datasets.citizens.privacy_unt: unknown key"
    )
    assert "did you mean 'privacy_unit'?" in bad.stderr

    missing = accord(
        "node", "check", "--config", str(tmp_path / "none.toml"), cwd=tmp_path, home=federation.home
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    _no_traceback(missing)


def test_coordinator_check(federation: CliFederation, tmp_path: Path) -> None:
    """Property: `accord coordinator check` accepts the running coordinator's config and refuses
    one whose certificate file is missing, naming the key and how to create it."""
    config = federation.root / "coordinator.toml"
    good = accord("coordinator", "check", "--config", str(config), cwd=tmp_path, home=federation.home)
    assert good.returncode == 0, good.stderr
    assert f"{config}: OK (3 node(s), 1 analyst(s))" in good.stdout
    bad_config = federation.root / "coordinator-bad.toml"
    bad_config.write_text(
        config.read_text(encoding="utf-8").replace("coordinators/coordinator.pem", "coordinators/nobody.pem"),
        encoding="utf-8",
    )
    bad = accord("coordinator", "check", "--config", str(bad_config), cwd=tmp_path, home=federation.home)
    assert bad.returncode == 2 and bad.stdout == ""
    _no_traceback(bad)
    assert f"{bad_config}: tls.cert: no such file" in bad.stderr and "accord pki init" in bad.stderr


# ---- a node dies ---------------------------------------------------------------------------


@dataclass
class Wounded:
    """A second coordinator over the shared county and district-a and a spare district-b node,
    which the test kills with SIGKILL (the shared federation stays whole for the other tests)."""

    port: int
    victim: Process


@pytest.fixture
def wounded(federation: CliFederation) -> Iterator[Wounded]:
    root = federation.root
    processes: list[Process] = []
    try:
        # its own state file: the federation's district-b holds the lock on district-b.sqlite3
        spare_config = dataclasses.replace(
            demo_node_config(root, "district-b", 0, secure_aggregation=False),
            state=StateConfig("sqlite", root / "state" / "district-b-spare.sqlite3"),
        )
        spare = write_node_config(spare_config, root / "district-b-spare.toml")
        victim = _start("district-b", ["node", "serve", "--config", str(spare)], root, processes)
        ports = {**federation.node_ports, "district-b": victim.wait_for_port(START_TIMEOUT)}
        config = write_coordinator_config(
            demo_coordinator_config(root, ports, 0), root / "coordinator-wounded.toml"
        )
        coordinator = _start(
            "coordinator-2", ["coordinator", "serve", "--config", str(config)], root, processes
        )
        port = coordinator.wait_for_port(START_TIMEOUT)
        # All three answer before the kill: the partial answer below is the kill's doing.
        with AccordClient(f"127.0.0.1:{port}", federation.analyst, agreement=HOUSING_AGREEMENT) as client:
            release = client.query_release(SQL, EPSILON, require_all=True)
        assert release.contributing_nodes == ("county", "district-a", "district-b")
        victim.stop(signal.SIGKILL)
        assert victim.popen.returncode == -signal.SIGKILL
        yield Wounded(port, victim)
    finally:
        _stop_all(processes)


def test_killed_node_require_all_fails_and_default_is_partial(
    federation: CliFederation, wounded: Wounded
) -> None:
    """Property: after a node is SIGKILLed, `--require-all` exits non-zero naming the node (and
    prints nothing on stdout); without it the answer comes from the others and says PARTIAL,
    in the table itself or, for CSV (which has no place for it), on stderr."""
    strict = federation.query("--require-all", port=wounded.port)
    assert strict.returncode == 2
    assert strict.stdout == ""
    _no_traceback(strict)
    assert strict.stderr.startswith("accord query: error: ")
    assert "district-b" in strict.stderr and "--require-all" in strict.stderr

    lenient = federation.query(port=wounded.port)
    assert lenient.returncode == 0, lenient.stderr
    lines = lenient.stdout.splitlines()
    assert "nodes: county, district-a" in lines
    partial = [line for line in lines if line.startswith("PARTIAL")]
    assert len(partial) == 1 and "district-b" in partial[0], lenient.stdout

    as_csv = federation.query("--format", "csv", port=wounded.port)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["nodes"] for r in rows} == {"county,district-a"}
    assert "PARTIAL" in as_csv.stderr and "district-b" in as_csv.stderr


# ---- accord demo ---------------------------------------------------------------------------


def test_demo_smoke(tmp_path: Path) -> None:
    """Property: `accord demo --people 3000` exits 0, prints answers with intervals, a refusal and
    a PARTIAL answer after it kills a node, and leaves no process running from its folder."""
    demo_dir = tmp_path / "demo"
    popen = subprocess.Popen(
        [*ACCORD, "demo", "--people", "3000", "--dir", str(demo_dir)],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: on failure we can stop it and its children
    )
    survivors: list[psutil.Process] = []
    try:
        stdout, stderr = popen.communicate(timeout=120)
        survivors = processes.survivors(str(demo_dir))  # looked at before any clean-up of ours
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.communicate(timeout=10)
        for leftover in processes.survivors(str(demo_dir)):  # only when the demo leaked (or we timed out)
            leftover.kill()
    assert popen.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    assert "nodes: county, district-a, district-b" in stdout
    assert re.search(r"Northbrook\s+\d+\s+\[\d+, \d+\]", stdout)
    assert "refused: " in stdout
    # citizens is secure-aggregated: every answer says so, and with district-b killed the query fails
    # cleanly, naming it (the county-only dataset keeps independent noise)
    assert "secure aggregation: the coordinator saw only the sum" in stdout
    assert "independent: each node added its own noise" in stdout
    assert "refused: secure aggregation needs every holder, and joining failed at district-b" in stdout
    assert "still running" not in stdout
    assert [(p.pid, p.info["cmdline"]) for p in survivors] == []
    # the folder it leaves can be served again as it is: the configs check, and a node comes back
    # on the very port its config names
    for role, config in (("node", "county.toml"), ("coordinator", "coordinator.toml")):
        checked = accord(role, "check", "--config", str(demo_dir / config), cwd=tmp_path, home=tmp_path)
        assert checked.returncode == 0, checked.stderr
    county = load_node_config(demo_dir / "county.toml")
    again = spawn(
        "county-again", [*ACCORD, "node", "serve", "--config", str(demo_dir / "county.toml")], tmp_path
    )
    try:
        assert again.wait_for_port(START_TIMEOUT) == int(county.listen.rsplit(":", 1)[1])
    finally:
        again.stop()
