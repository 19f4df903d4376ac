"""node.config: the node TOML, loaded into frozen dataclasses; every error names file, key and fix."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from accord.errors import ConfigError
from accord.node.config import NodeConfig, StateConfig, load_node_config
from accord.node.config_writer import write_node_config
from accord.query.schema import ColumnType, SecureAggregation

VALID = """
[node]
name = "county"
listen = "127.0.0.1:50051"
max_workers = 4
[tls]
cert = "certs/nodes/county.pem"
key = "certs/nodes/county.key"
ca = "/etc/accord/ca.pem"
[access]
coordinators = ["coordinator"]
[agreements]
dir = "agreements"
[datasets.residents]
path = "data/residents.parquet"
description = "People"
privacy_unit = "person_id"
max_rows_per_person = 2
on_violation = "clamp"
[datasets.residents.columns.person_id]
type = "string"
[datasets.residents.columns.age]
type = "integer"
lower = 0
upper = 110
[datasets.residents.columns.score]
type = "float"
lower = 0
upper = 1
[datasets.residents.columns.district]
type = "string"
categories = ["north", "south"]
description = "where they live"
[datasets.residents.columns.flag]
type = "boolean"
categories = [true, false]
[datasets.contacts]
path = "data/contacts.txt"
format = "csv"
privacy_unit = "pid"
[datasets.contacts.columns.pid]
type = "integer"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "residents.parquet").write_bytes(b"")
    (tmp_path / "data" / "contacts.txt").write_text("pid\n1\n")
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config(tmp_path: Path) -> None:
    cfg = load_node_config(write(tmp_path, VALID))
    assert isinstance(cfg, NodeConfig)
    assert (cfg.name, cfg.listen, cfg.max_workers, cfg.max_concurrent_rpcs) == (
        "county",
        "127.0.0.1:50051",
        4,
        32,
    )
    assert cfg.tls_cert == tmp_path / "certs/nodes/county.pem"  # relative to the config's folder
    assert cfg.tls_ca == Path("/etc/accord/ca.pem")
    assert cfg.coordinators == ("coordinator",)
    residents = cfg.dataset("residents")
    assert residents is not None
    assert residents.format == "parquet" and residents.on_violation == "clamp"
    assert residents.path == tmp_path / "data" / "residents.parquet"
    schema = residents.schema
    assert (schema.privacy_unit, schema.max_rows_per_person, schema.description) == ("person_id", 2, "People")
    age, score, district, flag = (schema.column(n) for n in ("age", "score", "district", "flag"))
    assert age is not None and (age.type, age.lower, age.upper) == (ColumnType.INTEGER, 0, 110)
    assert score is not None and isinstance(score.lower, float) and score.upper == 1.0
    assert district is not None and district.categories == ("north", "south")
    assert district.description == "where they live"
    assert flag is not None and flag.categories == (True, False)
    contacts = cfg.dataset("contacts")
    assert contacts is not None and contacts.format == "csv" and contacts.on_violation == "reject"
    assert contacts.schema.max_rows_per_person == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "key", "fix"),
    [
        ("upper = 110", "uper = 110", "datasets.residents.columns.age.uper", "did you mean 'upper'"),
        ("max_workers = 4", "max_worker = 4", "node.max_worker", "did you mean 'max_workers'"),
        (
            'privacy_unit = "person_id"',
            'privacy_units = "person_id"',
            "datasets.residents.privacy_units",
            "did you mean",
        ),
        ("upper = 110", "upper = 110.5", "datasets.residents.columns.age.upper", "must be an integer"),
        (
            "lower = 0\nupper = 110",
            "lower = 200\nupper = 110",
            "datasets.residents.columns.age.upper",
            "above upper",
        ),
        ("lower = 0\nupper = 110", "lower = 0", "datasets.residents.columns.age.upper", "is required"),
        (
            'type = "integer"\nlower',
            'type = "int"\nlower',
            "datasets.residents.columns.age.type",
            "'integer'",
        ),
        (
            'categories = ["north", "south"]',
            "categories = [1, 2]",
            "columns.district.categories",
            "string values",
        ),
        (
            'categories = ["north", "south"]',
            'categories = ["north", "north"]',
            "district.categories",
            "twice",
        ),
        ('categories = ["north", "south"]', "categories = []", "district.categories", "empty"),
        (
            'type = "string"\ncategories',
            'type = "string"\nlower = 1\nupper = 2\ncategories',
            "district.lower",
            "integer or float",
        ),
        ('on_violation = "clamp"', 'on_violation = "ignore"', "datasets.residents.on_violation", '"reject"'),
        ('on_violation = "clamp"', 'on_violation = "truncate"', "residents.on_violation", "always dropped"),
        (
            'privacy_unit = "person_id"',
            'privacy_unit = "person"',
            "datasets.residents.privacy_unit",
            "did you mean 'person_id'",
        ),
        ("max_rows_per_person = 2", "max_rows_per_person = 0", "residents.max_rows_per_person", "at least 1"),
        ('"data/residents.parquet"', '"data/missing.parquet"', "datasets.residents.path", "no such file"),
        (
            '"data/contacts.txt"\nformat = "csv"',
            '"data/contacts.txt"',
            "datasets.contacts.path",
            'format = "parquet"',
        ),
        ('format = "csv"', 'format = "xlsx"', "datasets.contacts.format", "'csv'"),
        ('listen = "127.0.0.1:50051"', 'listen = "localhost"', "node.listen", "host:port"),
        ('listen = "127.0.0.1:50051"', 'listen = "127.0.0.1:99999"', "node.listen", "from 0 to 65535"),
        (
            "[datasets.residents]",
            '[state]\nbackend = "redis"\n[datasets.residents]',
            "state.backend",
            '"sqlite"',
        ),
        (
            "[datasets.residents]",
            '[state]\nbackend = "memory"\npath = "x.db"\n[datasets.residents]',
            "state.path",
            "remove path",
        ),
        ("[datasets.residents]", "[queries]\nmax_age_seconds = 0\n[datasets.residents]", "max_age", "300"),
        (
            "[datasets.residents]",
            "[queries]\nclock_skew = 5\n[datasets.residents]",
            "queries.clock_skew",
            "did you",
        ),
        ('name = "county"', 'name = "County Council"', "node.name", "lower-case"),
        ('coordinators = ["coordinator"]', "coordinators = []", "access.coordinators", "certificate names"),
        ('ca = "/etc/accord/ca.pem"', "", "tls.ca", "is required"),
        ("[datasets.contacts]", '[datasets."my data"]', "datasets.my data", "SQL identifiers"),
        ("max_workers = 4", 'max_workers = "4"', "node.max_workers", "not a string"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path: Path, old: str, new: str, key: str, fix: str) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    message = info.value.message
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert fix in message, message


def test_missing_sections_and_unknown_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("[access]", "[acess]"))
    with pytest.raises(ConfigError, match=r"acess: unknown key; did you mean 'access'"):
        load_node_config(path)
    cut = VALID.split("[datasets.residents]")[0]
    with pytest.raises(ConfigError, match=r"datasets: missing; add a \[datasets\] table"):
        load_node_config(write(tmp_path, cut))
    with pytest.raises(ConfigError, match="columns: missing"):
        load_node_config(
            write(
                tmp_path,
                cut + '[datasets.x]\npath = "data/contacts.txt"\nformat = "csv"\nprivacy_unit = "a"\n',
            )
        )


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; pass the node config with --config"):
        load_node_config(tmp_path / "absent.toml")
    bad = write(tmp_path, "[node\nname = 1")
    with pytest.raises(ConfigError, match=r"node.toml: not valid TOML"):
        load_node_config(bad)


def test_demo_federation_configs_load(tmp_path: Path) -> None:
    """The synthetic demo's node configs are valid under this loader (apart from on_violation
    values it may not know, which are reported with a fix)."""
    from accord.demo.layout import write_demo_federation

    layout = write_demo_federation(tmp_path, people_per_authority=50)
    for path in layout.node_configs.values():
        try:
            cfg = load_node_config(path)
        except ConfigError as err:
            assert "on_violation" in err.message and "use" in err.message
            continue
        assert cfg.datasets


def test_state_and_freshness_defaults_and_settings(tmp_path: Path) -> None:
    """Property: without [state] a node keeps its state in SQLite at state/<name>.sqlite3 beside
    the config (never silently in memory); [state] and [queries] are read as written."""
    cfg = load_node_config(write(tmp_path, VALID))
    assert cfg.state == StateConfig("sqlite", tmp_path / "state" / "county.sqlite3")
    assert (cfg.query_max_age_seconds, cfg.clock_skew_seconds) == (300, 60)
    text = VALID.replace(
        "[datasets.residents]",
        '[state]\npath = "/var/lib/accord/county.db"\n[queries]\nmax_age_seconds = 30\n'
        "clock_skew_seconds = 5\n[datasets.residents]",
    )
    cfg = load_node_config(write(tmp_path, text))
    assert cfg.state == StateConfig("sqlite", Path("/var/lib/accord/county.db"))
    assert (cfg.query_max_age_seconds, cfg.clock_skew_seconds) == (30, 5)
    memory = VALID.replace("[datasets.residents]", '[state]\nbackend = "memory"\n[datasets.residents]')
    assert load_node_config(write(tmp_path, memory)).state == StateConfig("memory")


def test_writer_round_trips(tmp_path: Path) -> None:
    """Property: write_node_config writes what load_node_config reads back as the same config, with
    paths inside the config's folder written relative to it (the folder can be moved and served
    again as it is)."""
    cfg = load_node_config(write(tmp_path, VALID))
    cfg = dataclasses.replace(cfg, query_max_age_seconds=42, max_concurrent_rpcs=7)
    out = write_node_config(cfg, tmp_path / "copy.toml")
    assert load_node_config(out) == cfg
    text = out.read_text(encoding="utf-8")
    assert 'path = "data/residents.parquet"' in text and 'ca = "/etc/accord/ca.pem"' in text
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    again = load_node_config(moved / "copy.toml")
    assert again.dataset("residents") is not None
    assert again.tls_cert == moved / "certs/nodes/county.pem"


SECURE = 'on_violation = "clamp"\nsecure_aggregation = true\nholders = ["county", "north"]'
SECURE_TABLE = '\n[secure_aggregation]\nhonest_nodes = 2\ndelta = "1e-9"\n'
NO_HONEST = SECURE_TABLE.replace("honest_nodes = 2", "")


def test_secure_aggregation_config(tmp_path: Path) -> None:
    """Property: a dataset with secure_aggregation and its holders, under the federation's
    [secure_aggregation], states the setting (holders sorted) in its schema; others do not."""
    text = VALID.replace('on_violation = "clamp"', SECURE, 1) + SECURE_TABLE
    cfg = load_node_config(write(tmp_path, text))
    residents = cfg.dataset("residents")
    contacts = cfg.dataset("contacts")
    assert residents is not None and contacts is not None
    assert residents.schema.secure == SecureAggregation(2, "1e-9", ("county", "north"))
    assert contacts.schema.secure is None and not contacts.secure_aggregation


@pytest.mark.parametrize(
    ("change", "key", "fix"),
    [
        (lambda t: t.replace('on_violation = "clamp"', SECURE, 1), "datasets.residents.secure_aggregation",
         "add a [secure_aggregation] table"),
        (lambda t: t.replace('on_violation = "clamp"', 'secure_aggregation = true', 1) + SECURE_TABLE,
         "datasets.residents.holders", "is required"),
        (lambda t: t.replace('on_violation = "clamp"', SECURE.replace('"county", ', ""), 1) + SECURE_TABLE,
         "datasets.residents.holders", "must list this node"),
        (lambda t: t.replace('on_violation = "clamp"', SECURE, 1) + SECURE_TABLE.replace("= 2", "= 3"),
         "datasets.residents.holders", "more than the dataset's 2 holders"),
        (lambda t: t.replace('on_violation = "clamp"', 'holders = ["county", "north"]', 1),
         "datasets.residents.holders", "secure aggregation only"),
        (lambda t: t.replace('on_violation = "clamp"', SECURE, 1) + SECURE_TABLE.replace('"1e-9"', '"0.5"'),
         "secure_aggregation.delta", "at most"),
        (lambda t: t.replace('on_violation = "clamp"', SECURE, 1) + NO_HONEST,
         "secure_aggregation.honest_nodes", "is required"),
    ],
)  # fmt: skip
def test_secure_aggregation_mistakes_name_key_and_fix(
    tmp_path: Path, change: Callable[[str], str], key: str, fix: str
) -> None:
    path = write(tmp_path, change(VALID))
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    assert key in info.value.message and fix in info.value.message, info.value.message
