"""Agreements as files: the example agreements load against the demo's datasets; every mistake in a
file is refused at start-up with a message naming the file, the key and the fix; a folder is read
as the node needs it (only agreements naming the node, each checked against its datasets)."""

from __future__ import annotations

import shutil
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from accord.demo.datasets import DATASETS
from accord.demo.layout import copy_demo_agreements
from accord.errors import ConfigError
from accord.policies.agreement_draft import draft_agreement
from accord.policies.agreements import FieldUse, load_agreement, load_agreements
from accord.query.epsilon import Epsilon

SCHEMAS = {node: {d.name: d.schema for d in held} for node, held in DATASETS.items()}

GOOD = """
id = "dsa-1"
title = "Test"
lawful_basis = "public task"
consent = "opt-out"
valid_from = 2026-01-01
valid_until = 2027-12-31
review_date = 2027-06-30
min_group_size = 10

[purpose]
code = "P-1"
description = "testing"

[parties]
nodes = ["county", "district-a"]
organisations = ["Westshire County Council"]
analysts = ["alice"]

[budget]
per_analyst = "5"
total = "20"
per_query = "1/2"

[datasets.citizens.fields]
district = ["group_by", "filter"]
age = ["sum", "avg"]

[datasets.service_contacts.fields]
service = ["group_by"]
"""


def write(folder: Path, text: str, name: str = "a.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_agreements_load_for_every_demo_node(tmp_path: Path) -> None:
    copy_demo_agreements(tmp_path)
    county = load_agreements(tmp_path, "county", SCHEMAS["county"])
    assert sorted(county) == ["dsa-2026-007", "dsa-2026-011"]
    district = load_agreements(tmp_path, "district-a", SCHEMAS["district-a"])
    assert sorted(district) == ["dsa-2026-007"]  # the service review is the county's alone
    housing = county["dsa-2026-007"]
    assert housing.consent == "opt-out" and housing.min_group_size == 10
    assert housing.budget.per_query == Epsilon.parse("1")
    assert housing.datasets["citizens"].allows("income", FieldUse.AVG)
    assert not housing.datasets["citizens"].allows("income", FieldUse.SUM)
    assert "adult_social_care" not in housing.datasets["citizens"].fields
    assert len(housing.digest) == 64


def test_a_good_file_loads_and_other_parties_datasets_are_left_to_them(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    at_county = load_agreement(path, SCHEMAS["county"])
    assert set(at_county.datasets) == {"citizens", "service_contacts"}
    at_district = load_agreements(tmp_path, "district-a", SCHEMAS["district-a"])["dsa-1"]
    assert set(at_district.datasets) == {"citizens"}  # service_contacts is the county's
    assert at_district.budget.per_query == Epsilon.parse("0.5")
    assert load_agreements(tmp_path, "district-b", SCHEMAS["district-b"]) == {}  # not a party


BAD = [
    # (change to GOOD, the words the message must contain)
    (('consent = "opt-out"', 'consent = "maybe"'), ["consent", "opt-in", "opt-out"]),
    (("valid_until = 2027-12-31", "valid_until = 2025-12-31"), ["valid_until", "before valid_from"]),
    (("valid_from = 2026-01-01", 'valid_from = "2026-01-01"'), ["valid_from", "2027-12-31"]),
    (('id = "dsa-1"', 'id = "dsa 1"'), ["id", "letters, digits"]),
    (('id = "dsa-1"\n', ""), ["id", "required"]),
    (('title = "Test"', 'title = "  "'), ["title", "empty"]),
    (('per_query = "1/2"', 'per_query = "6"'), ["budget", "per_query <= per_analyst <= total"]),
    (('total = "20"', 'total = "twenty"'), ["total", "not a number"]),
    (('total = "20"', "total = 20"), ["total", "string"]),
    (('age = ["sum", "avg"]', 'age = ["sum", "median"]'), ["age", "unknown use", "group_by"]),
    (('age = ["sum", "avg"]', 'age = ["group_by"]'), ["age", "group_by needs", "categories"]),
    (('district = ["group_by", "filter"]', 'district = ["sum"]'), ["district", "sum needs", "bounds"]),
    (('age = ["sum", "avg"]', 'agee = ["sum"]'), ["agee", "not a column"]),
    (('age = ["sum", "avg"]', 'person_id = ["count"]'), ["person_id", "person identifier"]),
    (('age = ["sum", "avg"]', "age = []"), ["age", "list how it may be used"]),
    (("min_group_size = 10", "min_group_size = -1"), ["min_group_size"]),
    (('[purpose]\ncode = "P-1"\n', "[purpose]\n"), ["purpose", "code", "required"]),
    (
        ('lawful_basis = "public task"', 'lawful_basis = "public task"\ncolour = "blue"'),
        ["colour", "unknown key"],
    ),
    (('analysts = ["alice"]', "analysts = []"), ["analysts"]),
    (('code = "P-1"', 'code = "HOUSING "'), ["purpose.code", "no spaces", "consent records"]),
    (("review_date = 2027-06-30", "review_date = 2025-06-30"), ["review_date", "before valid_from"]),
    (('title = "Test"', 'title = "Te\\u0000st"'), ["title", "control characters"]),
    (
        ("[datasets.citizens.fields]", "[datasets.citizens]\ncount_rows = false\n[datasets.citizens.fields]"),
        ["count_rows", "min_group_size needs"],
    ),
]


@pytest.mark.parametrize(("change", "words"), BAD, ids=[c[0][1][:30] for c in BAD])
def test_every_mistake_names_the_file_the_key_and_the_fix(
    tmp_path: Path, change: tuple[str, str], words: list[str]
) -> None:
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_agreements(tmp_path, "county", SCHEMAS["county"])
    message = info.value.message
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_a_file_that_is_not_toml_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "id = \n[[[")
    with pytest.raises(ConfigError) as info:
        load_agreements(tmp_path, "county", SCHEMAS["county"])
    assert str(path) in info.value.message


def test_two_files_with_one_id_for_one_node_are_refused(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.toml")
    write(tmp_path, GOOD, "b.toml")
    with pytest.raises(ConfigError) as info:
        load_agreements(tmp_path, "county", SCHEMAS["county"])
    assert "also the id of" in info.value.message and "a.toml" in info.value.message


def test_an_agreement_sharing_none_of_the_nodes_datasets_is_refused(tmp_path: Path) -> None:
    only_contacts = (
        GOOD.split("[datasets.citizens.fields]")[0]
        + '[datasets.service_contacts.fields]\nservice = ["group_by"]\n'
    )
    write(tmp_path, only_contacts)
    with pytest.raises(ConfigError) as info:
        load_agreements(tmp_path, "district-a", SCHEMAS["district-a"])
    assert "shares none of this node's datasets" in info.value.message


def test_a_missing_folder_is_refused_saying_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_agreements(tmp_path / "nowhere", "county", SCHEMAS["county"])
    assert "[agreements] dir" in info.value.message


def test_validity_is_checked_by_date() -> None:
    agreement = load_agreement(
        Path(__file__).parent.parent.parent / "demo" / "agreements" / "dsa-2026-007-housing-csc.toml"
    )
    assert agreement.in_force(date(2026, 1, 1)) is None and agreement.in_force(date(2027, 12, 31)) is None
    assert "expired on 2027-12-31" in (agreement.in_force(date(2028, 1, 1)) or "")
    assert "not valid until 2026-01-01" in (agreement.in_force(date(2025, 12, 31)) or "")


def test_a_draft_shares_every_declared_field_and_loads(tmp_path: Path) -> None:
    text = draft_agreement("dsa-draft", "county", SCHEMAS["county"], ("alice",))
    path = write(tmp_path, text)
    draft = load_agreement(path, SCHEMAS["county"])
    citizens = SCHEMAS["county"]["citizens"]
    assert set(draft.datasets["citizens"].fields) == {c.name for c in citizens.columns} - {"person_id"}
    assert draft.datasets["citizens"].allows("income", FieldUse.SUM)
    assert draft.datasets["citizens"].allows("district", FieldUse.GROUP_BY)
    assert not draft.datasets["citizens"].allows("district", FieldUse.SUM)


def test_budget_caps_above_one_query_limit_are_exact(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('total = "20"', 'total = "5000.125"'))
    assert load_agreement(path).budget.total == Epsilon(Fraction(40001, 8))


def test_the_repository_examples_are_the_ones_the_demo_copies(tmp_path: Path) -> None:
    copied = copy_demo_agreements(tmp_path)
    source = Path(__file__).parent.parent.parent / "demo" / "agreements"
    assert sorted(p.name for p in copied) == sorted(p.name for p in source.glob("*.toml"))
    for p in copied:
        assert p.read_bytes() == (source / p.name).read_bytes()
    shutil.rmtree(tmp_path)


def test_files_ending_in_upper_case_toml_are_read_too(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "A.TOML")
    assert "dsa-1" in load_agreements(tmp_path, "county", SCHEMAS["county"])
