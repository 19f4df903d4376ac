"""The node's TOML configuration: loaded into frozen dataclasses and validated at start-up, and
written back by :mod:`accord.node.config_writer` (the demo, the benchmarks and the tests).

```toml
[node]
name = "county"                 # identity; must match the node certificate's name
listen = "127.0.0.1:50051"
max_workers = 8                 # optional (default 8): queries executed at once
max_concurrent_rpcs = 32        # optional (default 32): RPCs accepted at once

[tls]
cert = "certs/nodes/county.pem"
key = "certs/nodes/county.key"
ca = "certs/ca.pem"
crl = "certs/crl.pem"           # optional: the federation's revocation list (`accord pki revoke`),
                                # reloaded within a second of changing

[fairness]                      # optional: one analyst's share of this node
max_in_flight = 4               # optional (default 4): one analyst's queries running at once
per_minute = 120                # optional (default 120): one analyst's queries a minute...
burst = 20                      # optional (default 20): ...in bursts of up to this many

[access]
coordinators = ["coordinator"]  # certificate names allowed to send queries

[queries]                       # optional: how fresh a signed query must be, how much it may spend
max_age_seconds = 300           # optional (default 300): refuse queries signed longer ago
clock_skew_seconds = 60         # optional (default 60): allowance for clocks that disagree
max_epsilon = "1"               # optional (default "1"): the most epsilon one query may spend here

[agreements]                    # the data-sharing agreements this node holds
dir = "agreements"              # one TOML file per agreement (see accord.policies.agreements)

[consent]                       # optional: the consent register
path = "state/consent.sqlite3"  # optional (default state/consent.sqlite3 beside this file)

[timing]                        # optional: when answers leave the node (see the README, "Timing")
answer_seconds = 1.0            # optional (default 1.0): no answer leaves before this many seconds
                                # after the request arrived; 0 turns padding off (answer times
                                # then depend on the data: tests and benchmarks only)
report_node_seconds = false     # optional (default false): send the node's handler time to the
                                # coordinator as trailing metadata (a data-dependent disclosure)

[audit]                         # optional: signing the audit log (see accord.node.config_audit)
key = "audit/county.key"        # the node's Ed25519 checkpoint key (`accord node audit-key`)

[state]                         # optional: what the node remembers (answered queries)
backend = "sqlite"              # optional (default "sqlite"); "memory" forgets on restart
path = "state/county.sqlite3"   # optional (default state/<name>.sqlite3 beside this file)

[datasets.residents]              # the key is the dataset name analysts write after FROM
path = "data/residents.parquet"   # .parquet or .csv (inferred from the suffix, or `format = "csv"`)
format = "parquet"                # optional: "parquet" or "csv"
description = "..."               # optional
privacy_unit = "person_id"        # the person-identifier column (must be declared below)
max_rows_per_person = 1           # optional (default 1): rows one person may contribute
max_rows = 1000000000             # optional (default 10^9): the most rows the file may hold
                                  # (public; with the bounds it decides which sums cannot overflow)
on_violation = "reject"           # optional (default "reject") or "clamp": what to do when the
                                  # data breaks the declared bounds/categories
answer_seconds = 2.0              # optional: this dataset's answer-time budget ([timing]'s otherwise)
grouped_answer_seconds = 3.0      # optional: the budget of its GROUP BY queries (answer_seconds otherwise)
secure_aggregation = true         # optional (default false): answer only by secure aggregation with
                                  # distributed noise (needs [secure_aggregation] below)
holders = ["county", "north"]     # with secure_aggregation: every node holding this dataset (this
                                  # one too): the participants of every query, exactly

[datasets.residents.columns.age]  # every column analysts may use; others are not exposed
type = "integer"                  # integer | float | boolean | string
lower = 0                         # optional bounds (numeric columns; needed for SUM/AVG)
upper = 110
description = "..."               # optional

[datasets.residents.columns.district]
type = "string"
categories = ["north", "south"]   # optional public values (needed for GROUP BY)

[secure_aggregation]              # the federation's setting, the same at every node
honest_nodes = 3                  # participants assumed honest: each node's noise share is calibrated
                                  # so that any 3 shares together give the whole guarantee
delta = "1e-9"                    # optional (default "1e-9"): each query is (epsilon, delta)-DP
```
Relative paths resolve against the directory of the config file. Unknown keys are rejected with a
did-you-mean hint. Every error is a :class:`~accord.errors.ConfigError` naming the file, the key
(for example ``datasets.residents.columns.age.upper``) and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from accord.config import Table, read_toml
from accord.errors import ConfigError, InvalidQuery
from accord.node.config_audit import AuditConfig, audit_config
from accord.node.config_datasets import DatasetConfig, answer_seconds, dataset_config
from accord.query.epsilon import Epsilon
from accord.query.schema import SecureAggregation
from accord.rpc.fairness import FairnessConfig, fairness_config
from accord.rpc.transport import TlsFiles

__all__ = [
    "STATE_BACKENDS",
    "DatasetConfig",
    "NodeConfig",
    "StateConfig",
    "load_node_config",
]

STATE_BACKENDS = ("sqlite", "memory")
_NODE_KEYS = {"name", "listen", "max_workers", "max_concurrent_rpcs"}


@dataclass(frozen=True)
class StateConfig:
    """Where the node keeps what it must remember (see :mod:`accord.node.state`). ``path`` is the
    SQLite file; the ``memory`` backend keeps nothing across restarts (tests and benchmarks)."""

    backend: str = "sqlite"
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.backend not in STATE_BACKENDS:
            raise ConfigError(f"state backend {self.backend!r} is not one of {', '.join(STATE_BACKENDS)}")
        if self.backend == "sqlite" and self.path is None:
            raise ConfigError("the sqlite state backend needs a path")


@dataclass(frozen=True)
class NodeConfig:
    name: str
    listen: str
    tls_cert: Path
    tls_key: Path
    tls_ca: Path
    coordinators: tuple[str, ...]
    datasets: tuple[DatasetConfig, ...]
    state: StateConfig
    agreements_dir: Path
    consent_path: Path
    max_workers: int = 8
    max_concurrent_rpcs: int = 32
    query_max_age_seconds: int = 300
    clock_skew_seconds: int = 60
    max_epsilon: Epsilon = field(default_factory=lambda: Epsilon(Fraction(1)))
    tls_crl: Path | None = None
    fairness: FairnessConfig = field(default_factory=FairnessConfig)

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_ca, self.tls_crl)

    answer_seconds: float = 1.0  # [timing]: no answer leaves earlier (0: padding off)
    report_node_seconds: bool = False  # [timing]: send the node's handler time (a disclosure)
    audit: AuditConfig = field(default_factory=AuditConfig)
    source: Path | None = field(default=None, compare=False)
    """The file the config was read from (its digest is logged when the node starts)."""

    def dataset(self, name: str) -> DatasetConfig | None:
        for d in self.datasets:
            if d.schema.name == name:
                return d
        return None


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node config file. Raises :class:`ConfigError` naming the file and key."""
    file = Path(path)
    top = Table(file, "", read_toml(file, "pass the node config with --config"))
    top.check_keys(
        {
            "node",
            "tls",
            "access",
            "queries",
            "agreements",
            "consent",
            "state",
            "datasets",
            "timing",
            "fairness",
            "audit",
            "secure_aggregation",
        }
    )

    node = top.sub("node", required=True)
    node.check_keys(_NODE_KEYS)
    name = node.name("name")
    listen = node.address("listen", listen=True)
    max_workers = node.integer("max_workers", 8, 1, 1024, "8 is a good start")
    max_rpcs = node.integer("max_concurrent_rpcs", 32, 1, 65536, "32 is a good start")

    tls = top.sub("tls", required=True)
    tls.check_keys({"cert", "key", "ca", "crl"})
    cert, key, ca = tls.path("cert"), tls.path("key"), tls.path("ca")
    crl = tls.path("crl") if tls.has("crl") else None

    access = top.sub("access", required=True)
    access.check_keys({"coordinators"})
    coordinators = access.names(
        "coordinators", '["coordinator"]', "coordinator certificate names allowed to query"
    )

    queries = top.sub("queries")
    queries.check_keys({"max_age_seconds", "clock_skew_seconds", "max_epsilon"})
    max_age = queries.integer("max_age_seconds", 300, 1, 86_400, "300 (five minutes) is a good start")
    skew = queries.integer("clock_skew_seconds", 60, 0, 3_600, "60 is a good start; keep clocks in sync")
    max_epsilon_text = queries.get("max_epsilon", str, "1")
    try:
        max_epsilon = Epsilon.parse(max_epsilon_text)
    except InvalidQuery as err:
        raise queries.error("max_epsilon", err.message + ' (write it as a string, e.g. "1")') from None

    agreements = top.sub("agreements", required=True)
    agreements.check_keys({"dir"})
    agreements_dir = agreements.path("dir")
    consent = top.sub("consent")
    consent.check_keys({"path"})
    consent_path = consent.path("path") if consent.has("path") else file.parent / "state" / "consent.sqlite3"

    datasets_table = top.sub("datasets", required=True)
    if not datasets_table.table:
        raise datasets_table.error("", "no datasets configured; add a [datasets.NAME] table")
    datasets = tuple(dataset_config(datasets_table.sub(n), n) for n in datasets_table.table)
    datasets = _secure(top.sub("secure_aggregation"), datasets_table, datasets, name)
    answer_seconds, report_node_seconds = _timing(top.sub("timing"))

    return NodeConfig(
        name=name,
        listen=listen,
        tls_cert=cert,
        tls_key=key,
        tls_ca=ca,
        coordinators=coordinators,
        datasets=datasets,
        state=_state(top.sub("state"), name),
        agreements_dir=agreements_dir,
        consent_path=consent_path,
        max_workers=max_workers,
        max_concurrent_rpcs=max_rpcs,
        query_max_age_seconds=max_age,
        clock_skew_seconds=skew,
        max_epsilon=max_epsilon,
        tls_crl=crl,
        fairness=fairness_config(top.sub("fairness")),
        answer_seconds=answer_seconds,
        report_node_seconds=report_node_seconds,
        audit=audit_config(top.sub("audit"), name),
        source=file,
    )


def _secure(
    t: Table, tables: Table, datasets: tuple[DatasetConfig, ...], node: str
) -> tuple[DatasetConfig, ...]:
    """``[secure_aggregation]``: the federation's setting (the same at every node), stated with the
    dataset's ``holders`` in the catalog of every dataset that sets ``secure_aggregation = true``."""
    t.check_keys({"honest_nodes", "delta"})
    wanted = [d for d in datasets if d.secure_aggregation]
    if not t.table:
        if wanted:
            name = wanted[0].schema.name
            raise tables.sub(name).error(
                "secure_aggregation",
                "needs the federation's setting: add a [secure_aggregation] table with honest_nodes "
                '(how many participants are assumed honest) and delta (e.g. "1e-9"), the same at every node',
            )
        return datasets
    t.get("honest_nodes", int, required=True)
    honest = t.integer("honest_nodes", 1, 1, 64, "the number of participants assumed honest")
    delta = t.get("delta", str, "1e-9")
    try:
        SecureAggregation(honest, delta, tuple(f"n{i:02d}" for i in range(64)))  # checked per dataset below
    except ConfigError as err:
        raise t.error("delta" if "delta" in err.message else "honest_nodes", err.message) from None
    out: list[DatasetConfig] = []
    for d in datasets:
        if not d.secure_aggregation:
            out.append(d)
            continue
        table = tables.sub(d.schema.name)
        if node not in d.holders:
            raise table.error("holders", f"must list this node ({node!r}) among the dataset's holders")
        try:
            setting = SecureAggregation(honest, delta, d.holders)
        except ConfigError as err:
            raise table.error("holders", err.message) from None
        out.append(replace(d, schema=replace(d.schema, secure=setting)))
    return tuple(out)


def _state(t: Table, node: str) -> StateConfig:
    t.check_keys({"backend", "path"})
    backend = t.get("backend", str, "sqlite")
    if backend not in STATE_BACKENDS:
        raise t.error(
            "backend",
            f'{backend!r} is not a state backend; use "sqlite" (or "memory", which forgets every answer '
            "when the node stops: for tests only)",
        )
    if backend == "memory":
        if t.has("path"):
            raise t.error("path", 'the "memory" backend keeps no file; remove path or use "sqlite"')
        return StateConfig("memory")
    path = t.path("path") if t.has("path") else t.file.parent / "state" / f"{node}.sqlite3"
    return StateConfig("sqlite", path)


# ---- answer timing ----------------------------------------------------------------------------


def _timing(t: Table) -> tuple[float, bool]:
    """``[timing]``: the node's answer-time budget and whether it reports its handler time."""
    t.check_keys({"answer_seconds", "report_node_seconds"})
    seconds = answer_seconds(t, "answer_seconds", 1.0, 0.0)
    assert seconds is not None
    return seconds, bool(t.get("report_node_seconds", bool, False))
