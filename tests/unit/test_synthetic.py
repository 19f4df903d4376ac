"""The synthetic county: deterministic, sized, overlapping, and inside what the TOML declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from accord.coordinator.config import load_coordinator_config
from accord.demo.datasets import DISTRICTS, NODES
from accord.demo.layout import demo_node_config, write_demo_federation
from accord.demo.population import generate_population
from accord.node.config import StateConfig, load_node_config
from accord.policies.pki import init_federation

PEOPLE = 5_000


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    init_federation(out / "certs", nodes=NODES, analysts=("alice",))
    write_demo_federation(
        out, people_per_authority=PEOPLE, seed=3, ports={"county": 6001, "coordinator": 6000}
    )
    return out


def test_deterministic_for_a_seed() -> None:
    a, b, c = generate_population(3_000, 11), generate_population(3_000, 11), generate_population(3_000, 12)
    for node in NODES:
        for name, table in a.datasets[node].items():
            assert table.equals(b.datasets[node][name])
    assert not a.people.equals(c.people)


def test_person_ids_unique_and_formatted() -> None:
    pop = generate_population(2_000, 1)
    ids = pop.people["person_id"].to_pylist()
    assert len(set(ids)) == len(ids) == 2_000
    assert ids[0] == "P0000001"


def test_every_authority_has_enough_rows(federation: Path) -> None:
    for node in NODES:
        rows = pq.read_table(federation / "data" / node / "citizens.parquet")
        assert rows.num_rows >= PEOPLE
        assert pc.count_distinct(rows["person_id"]).as_py() == rows.num_rows  # one row per person
    for node, district in DISTRICTS.items():
        rows = pq.read_table(federation / "data" / node / "citizens.parquet")
        assert pc.unique(rows["district"]).to_pylist() == [district]
    assert not (federation / "data" / "district-a" / "service_contacts.parquet").exists()


def test_county_records_overlap_with_districts(federation: Path) -> None:
    county = set(pq.read_table(federation / "data" / "county" / "citizens.parquet")["person_id"].to_pylist())
    districts: set[str] = set()
    for node in DISTRICTS:
        districts |= set(
            pq.read_table(federation / "data" / node / "citizens.parquet")["person_id"].to_pylist()
        )
    share = len(county & districts) / len(county)
    assert 0.75 <= share <= 0.98  # very often, but not always, the same person in both


def test_values_inside_the_declared_bounds_and_categories(federation: Path) -> None:
    checked = 0
    for node in NODES:
        config = tomllib.loads((federation / f"{node}.toml").read_text(encoding="utf-8"))
        for name, ds in config["datasets"].items():
            table = pq.read_table(federation / ds["path"])
            assert sorted(table.column_names) == sorted(ds["columns"])
            assert ds["privacy_unit"] == "person_id"
            for col_name, col in ds["columns"].items():
                values = table[col_name]
                assert values.null_count == 0
                if col["type"] == "integer":
                    assert str(values.type) == "int64"
                    mm = pc.min_max(values).as_py()
                    assert col["lower"] <= mm["min"] and mm["max"] <= col["upper"], (node, name, col_name)
                elif col["type"] == "boolean":
                    assert str(values.type) == "bool"
                else:
                    assert str(values.type) == "string"
                if "categories" in col:
                    seen = set(pc.unique(values).to_pylist())
                    assert seen <= set(col["categories"]), (node, name, col_name, seen)
                checked += 1
    assert checked == 3 * 12 + 5


def test_flags_follow_what_each_authority_knows(federation: Path) -> None:
    district = pq.read_table(federation / "data" / "district-a" / "citizens.parquet")
    county = pq.read_table(federation / "data" / "county" / "citizens.parquet")
    assert not pc.any(district["adult_social_care"]).as_py()
    assert not pc.any(district["free_school_meals"]).as_py()
    assert pc.any(district["claims_housing_benefit"]).as_py()
    assert pc.any(county["adult_social_care"]).as_py() and pc.any(county["free_school_meals"]).as_py()
    children = county.filter(pc.less(county["age"], 18))
    assert pc.sum(children["income"]).as_py() < 0.05 * pc.sum(county["income"]).as_py()
    assert set(pc.unique(county["age_band"]).to_pylist()) == {"0-17", "18-34", "35-64", "65+"}


def test_service_contacts_exceed_the_declared_bound(federation: Path) -> None:
    config = tomllib.loads((federation / "county.toml").read_text(encoding="utf-8"))
    declared = config["datasets"]["service_contacts"]["max_rows_per_person"]
    assert declared == 3
    contacts = pq.read_table(federation / "data" / "county" / "service_contacts.parquet")
    per_person = contacts.group_by("person_id").aggregate([("person_id", "count")])["person_id_count"]
    assert pc.max(per_person).as_py() == 6 and pc.min(per_person).as_py() == 1
    assert pc.sum(pc.greater(per_person, declared)).as_py() > 0
    county_ids = set(
        pq.read_table(federation / "data" / "county" / "citizens.parquet")["person_id"].to_pylist()
    )
    assert set(contacts["person_id"].to_pylist()) <= county_ids


def test_configs_point_at_the_layout(federation: Path) -> None:
    """Property: the node and coordinator configs load, name every file relative to the folder
    (so it can be moved and served again), and keep each node's state in the folder."""
    node = load_node_config(federation / "county.toml")
    assert (node.name, node.listen) == ("county", "127.0.0.1:6001")
    assert (node.tls_cert, node.tls_key, node.tls_ca) == (
        federation / "certs/nodes/county.pem",
        federation / "certs/nodes/county.key",
        federation / "certs/ca.pem",
    )
    assert node.coordinators == ("coordinator",)
    assert node.state == StateConfig("sqlite", federation / "state" / "county.sqlite3")
    citizens = node.dataset("citizens")
    assert citizens is not None and citizens.path == federation / "data/county/citizens.parquet"
    flag = citizens.schema.column("claims_housing_benefit")
    assert flag is not None and flag.categories == (True, False)
    text = (federation / "county.toml").read_text(encoding="utf-8")
    assert 'cert = "certs/nodes/county.pem"' in text and str(federation) not in text
    coord = load_coordinator_config(federation / "coordinator.toml")
    assert (coord.name, coord.listen, coord.deadline_seconds) == ("coordinator", "127.0.0.1:6000", 10)
    assert coord.tls.cert == federation / "certs/coordinators/coordinator.pem"
    assert coord.analysts == ("alice",)
    assert {n.name: n.address for n in coord.nodes} == {
        "county": "127.0.0.1:6001",
        "district-a": "127.0.0.1:50052",
        "district-b": "127.0.0.1:50053",
    }
    assert not [p for p in federation.rglob(".*") if "certs" not in p.parts]  # no temporary files left


def test_node_config_standalone(tmp_path: Path) -> None:
    config = demo_node_config(tmp_path, "district-b", 50060)
    assert config.listen == "127.0.0.1:50060"
    assert [d.schema.name for d in config.datasets] == ["citizens"]
    with pytest.raises(ValueError, match="unknown node"):
        demo_node_config(tmp_path, "parish", 1)
