"""Agreements, consent, budgets, suppression and the register, end to end: real node and coordinator
servers over mTLS, the analyst's client and command line, and the operator's commands run as an
operator runs them, against the same files the running nodes use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from accord.errors import BudgetExhausted, PermissionDenied
from accord.node.config import NodeConfig, load_node_config
from accord.query.epsilon import Epsilon
from tests.conftest import TestPki
from tests.integration.commands import accord
from tests.integration.federation import (
    PUMS_PID,
    Federation,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    read_census,
    start_federation,
    write,
    write_node,
    write_open_agreement,
)
from tests.paths import CENSUS

NODES = ("county", "district-a")
NARROW = """
id = "narrow"
title = "Counts of people by sex and race, ages filtered"
lawful_basis = "public task"
consent = "opt-out"
valid_from = 2020-01-01
valid_until = 2999-12-31
review_date = 2999-01-01
min_group_size = 40

[purpose]
code = "CENSUS-COUNTS"
description = "Population counts for service planning"

[parties]
nodes = ["county", "district-a"]
organisations = ["Westshire County Council"]
analysts = ["alice", "bob"]

[budget]
per_analyst = "3"
total = "5"
per_query = "1"

[datasets.pums.fields]
sex = ["group_by", "filter"]
race = ["group_by"]
age = ["filter", "sum"]
"""
EXPIRED = (
    NARROW.replace('id = "narrow"', 'id = "ended"')
    .replace("valid_until = 2999-12-31", "valid_until = 2021-12-31")
    .replace("review_date = 2999-01-01", "review_date = 2021-06-01")
)


@pytest.fixture(scope="module")
def fed(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("governance")
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    configs = {}
    for name in NODES:
        configs[name] = write_node(root, node_config(root, name, [pums_dataset(root, "pums", PUMS_PID)]))
    write(root / "agreements" / "narrow.toml", NARROW)
    write(root / "agreements" / "ended.toml", EXPIRED)
    federation = start_federation(root, pki, configs, analysts=("alice", "bob", "mallory"))
    yield federation
    federation.stop()


def config_of(fed: Federation, node: str = "county") -> NodeConfig:
    return load_node_config(fed.root / f"{node}.toml")


def run(fed: Federation, *args: str) -> tuple[int, str, str]:
    done = accord(*args, cwd=fed.root, home=fed.root)
    return done.returncode, done.stdout, done.stderr


def analyst_args(fed: Federation, who: str = "alice") -> list[str]:
    tls = fed.pki.analyst(who)
    return ["--coordinator", fed.address, "--cert", str(tls.cert), "--key", str(tls.key), "--ca", str(tls.ca)]


# ---- what an analyst sees ------------------------------------------------------------------------


def test_the_catalog_under_an_agreement_shows_only_what_it_grants(fed: Federation) -> None:
    with fed.client() as client:
        everything = client.catalog()
        narrow = client.catalog(agreement="narrow")
        with pytest.raises(PermissionDenied) as info:
            client.catalog(agreement="no-such-thing")
    assert {c.name for c in everything["pums"][0].columns} >= {"income", "educ", "married"}
    schema, holders = narrow["pums"]
    assert {c.name for c in schema.columns} == {"pid", "sex", "race", "age"} and holders == NODES
    assert info.value.reason == "AGREEMENT_UNKNOWN"
    code, out, _ = run(fed, "catalog", "--agreement", "narrow", "--format", "json", *analyst_args(fed))
    assert code == 0 and "income" not in out and '"sex"' in out


def test_a_field_the_agreement_hides_is_refused_like_one_that_does_not_exist(fed: Federation) -> None:
    with fed.client(agreement="narrow") as client:
        for column in ("income", "incomx"):
            with pytest.raises(PermissionDenied) as info:
                client.query_release(f"SELECT SUM({column}) FROM pums", "0.1")
            assert info.value.reason == "FIELD_NOT_IN_AGREEMENT"
            assert "income" not in info.value.message.replace(column, "")
        with pytest.raises(PermissionDenied) as use:
            client.query_release("SELECT COUNT(*) FROM pums WHERE race = 1", "0.1")
        assert use.value.reason == "FIELD_USE_NOT_ALLOWED" and "narrow" in use.value.message


def test_an_expired_agreement_is_refused_at_every_node(fed: Federation) -> None:
    with fed.client(agreement="ended") as client, pytest.raises(PermissionDenied) as info:
        client.query_release("SELECT COUNT(*) FROM pums", "0.1")
    assert info.value.reason == "AGREEMENT_EXPIRED" and "2021-12-31" in info.value.message
    with (
        fed.client(tls=fed.pki.analyst("mallory"), agreement="narrow") as client,
        pytest.raises(PermissionDenied) as info,
    ):
        client.query_release("SELECT COUNT(*) FROM pums", "0.1")
    assert info.value.reason == "ANALYST_NOT_A_PARTY"


def test_small_groups_are_suppressed_in_the_combined_answer(fed: Federation) -> None:
    """Races 7 and 8 are declared but nobody has them; races with fewer than 40 people in the
    combined answer (each node holds the same 1,000 people) are suppressed, marked, not dropped."""
    census = read_census(CENSUS / PUMS_PID)
    with fed.client(tls=fed.pki.analyst("bob"), agreement="narrow") as client:
        release = client.query_release("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", "1")
    assert release.min_group_size == 40 and release.agreement == "narrow"
    assert [row.group[0] for row in release.rows] == list(range(1, 9))
    for row in release.rows:
        race = row.group[0]
        combined = 2 * sum(1 for r in census if r["race"] == race)
        if combined < 30:
            assert row.suppressed and row.cells == ()
        elif combined > 60:
            assert not row.suppressed and abs(row.cells[0].estimate.value - combined) < 30


def test_a_preview_then_the_budget_running_out(fed: Federation) -> None:
    """alice previews (nothing spent), spends, sees her budget at both nodes, and is refused with
    RESOURCE_EXHAUSTED saying what is left once her 3 are gone; retries cost nothing."""
    sql = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"
    with fed.client(agreement="narrow") as client:
        preview = client.explain(sql, "1", target_half_width=5)
        assert {n.node for n in preview.nodes} == set(NODES) and all(n.fits for n in preview.nodes)
        assert preview.combined[0].epsilon_for_target is not None
        lines, unreachable = client.budget("narrow")
        assert unreachable == {} and all(ls[0].analyst_spent == Epsilon.zero() for ls in lines.values())
        for i in range(3):
            client.query_release(sql, "1", query_id=f"spend-{i}")
        client.query_release(sql, "1", query_id="spend-0")  # a retry: answered from the state, free
        lines, _ = client.budget("narrow")
        for node in NODES:
            (line,) = lines[node]
            assert line.analyst_spent == Epsilon.parse("3") and line.answered == 3
            assert line.analyst_remaining == Epsilon.zero() and line.agreement_remaining == Epsilon.parse("1")
            assert line.agreement_spent == Epsilon.parse("4")  # bob spent 1 in the suppression test
        with pytest.raises(BudgetExhausted) as info:
            client.query_release(sql, "0.5")
        assert (
            "alice has 0 left (of 3)" in info.value.message
            and "the agreement has 1 left (of 5)" in info.value.message
        )
        assert not client.explain(sql, "0.5").nodes[0].fits
    code, out, err = run(fed, "budget", *analyst_args(fed))
    assert code == 0, err
    assert "narrow" in out and "open" in out and "county" in out and "district-a" in out
    code, out, err = run(
        fed, "query", "--explain", "--target-half-width", "3", "--epsilon", "0.5", "--agreement", "narrow",
        *analyst_args(fed, "bob"), sql,
    )  # fmt: skip
    assert code == 0, err
    assert "nothing is spent" in out and "epsilon for the target" in out
    assert "you have 2 of 3 left, the agreement 1 of 5" in out


# ---- what an operator does -----------------------------------------------------------------------


def test_operators_see_every_analysts_budget(fed: Federation) -> None:
    with fed.client(tls=fed.pki.analyst("bob"), agreement="narrow") as client:
        client.query_release("SELECT COUNT(*) FROM pums", "1/4")
    code, out, err = run(fed, "node", "budget", "--config", str(fed.root / "county.toml"), "--format", "json")
    assert code == 0, err
    lines = {(x["agreement"], x["analyst"]): x for x in json.loads(out)["nodes"]["county"]}
    assert lines[("narrow", "bob")]["analyst_spent"] == "5/4"  # 1 in the suppression test, then 1/4
    assert ("open", "alice") in lines and ("ended", "alice") in lines  # covered, nothing spent yet


def test_consent_files_import_whole_or_not_at_all(fed: Federation, tmp_path: Path) -> None:
    config = str(fed.root / "district-a.toml")
    bad = write(
        tmp_path / "bad.csv",
        "person,purpose,status,timestamp,source\n"
        "1,CENSUS-COUNTS,withdrawn,2026-11-30T10:00:00Z,letter\n"
        "2,CENSUS-COUNTS,nope,2026-11-30T10:00:00Z,letter\n"
        "3,CENSUS-COUNTS,given,someday,letter\n",
    )
    code, out, err = run(fed, "consent", "import", str(bad), "--config", config)
    assert code == 2 and out == ""
    assert "2 bad line(s), nothing was imported" in err and "line 3:" in err and "line 4:" in err
    code, out, _ = run(fed, "consent", "show", "1", "--config", config)
    assert "no consent records" in out  # line 2 was good, but nothing was imported
    opt_out = write(
        tmp_path / "opt-out.txt", "# opt-outs\n" + "\n".join(str(p) for p in range(1, 101)) + "\n"
    )
    code, out, err = run(
        fed, "consent", "import", str(opt_out), "--opt-out-list", "--purpose", "CENSUS-COUNTS",
        "--source", "national opt-out", "--config", config,
    )  # fmt: skip
    assert code == 0 and "100 consent record(s) imported" in out, err
    code, out, err = run(
        fed, "consent", "set", "7", "--purpose", "CENSUS-COUNTS", "--status", "given", "--config", config
    )
    assert code == 0, err
    code, out, _ = run(fed, "consent", "show", "7", "--config", config)
    assert "CENSUS-COUNTS: given" in out and "refused" in out  # the current choice and the history
    code, out, _ = run(fed, "consent", "transparency", "5", "--config", config)
    assert code == 0 and "narrow" in out and "are NOT used for purpose CENSUS-COUNTS" in out
    assert "open" in out and "MAY be used" in out
    # the running node applies it to the next query: 99 people opted out at district-a
    census = read_census(CENSUS / PUMS_PID)
    with fed.client(tls=fed.pki.analyst("bob"), agreement="narrow") as client:
        release = client.query_release("SELECT COUNT(*) AS n FROM pums WHERE age > 0", "1/4")
    expected = sum(1 for r in census if r["age"] > 0) * 2 - sum(
        1 for r in census if r["age"] > 0 and 1 <= r["pid"] <= 100 and r["pid"] != 7
    )
    assert abs(release.rows[0].cells[0].estimate.value - expected) < 40


class _Page(HTMLParser):
    """Checks the page is well formed (every element closed in order) and collects what matters."""

    VOID = {"meta", "br", "link", "img", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attributes: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_public_register_is_a_static_page_and_json(fed: Federation, tmp_path: Path) -> None:
    with fed.client() as client, pytest.raises(PermissionDenied):
        client.query_release("SELECT SUM(nope) FROM pums", "0.1")
    out_dir = tmp_path / "register"
    code, _, err = run(
        fed, "register", "publish", "--config", str(fed.root / "county.toml"), "--out", str(out_dir)
    )
    assert code == 0, err
    page = _Page()
    page.feed((out_dir / "index.html").read_text(encoding="utf-8"))
    page.close()
    assert page.open == ["html"] or page.open == []  # nothing left open but (optionally) the document
    assert "script" not in page.tags and not any(k.startswith("on") for _, a in page.attributes for k in a)
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.attributes
    text = " ".join(page.text)
    for words in ("Counts of people by sex and race", "Population counts for service planning", "public task",
                  "expired", "in force", "Westshire County Council", "Queries refused"):  # fmt: skip
        assert words in text, words
    data = json.loads((out_dir / "register.json").read_text(encoding="utf-8"))
    agreements = {a["id"]: a for a in data["agreements"]}
    assert set(agreements) == {"open", "narrow", "ended"}
    narrow = agreements["narrow"]
    assert narrow["datasets"]["pums"]["fields"] == {
        "age": ["filter", "sum"],
        "race": ["group_by"],
        "sex": ["filter", "group_by"],
    }
    assert narrow["parties"]["analysts_covered"] == 2 and "alice" not in json.dumps(narrow)
    assert narrow["use"]["queries_answered"] >= 1 and narrow["budget"]["total"] == "5"
    assert agreements["open"]["use"]["refused_by_reason"].get("FIELD_NOT_IN_AGREEMENT", 0) >= 1
    assert agreements["ended"]["status"] == "expired"
    census_values = {str(r["income"]) for r in read_census(CENSUS / PUMS_PID)[:50]}
    blob = (out_dir / "register.json").read_text() + (out_dir / "index.html").read_text()
    assert not any(f'"{v}"' in blob for v in census_values)  # no data, no results


def test_agreement_check_and_draft(fed: Federation, tmp_path: Path) -> None:
    code, out, err = run(fed, "agreement", "check", "--config", str(fed.root / "county.toml"))
    assert code == 0, err
    assert "narrow" in out and "expired on 2021-12-31" in out and "3 agreement(s) for node county: OK" in out
    code, out, err = run(
        fed,
        "agreement",
        "draft",
        "--id",
        "dsa-new",
        "--analyst",
        "alice",
        "--config",
        str(fed.root / "county.toml"),
    )
    assert code == 0, err
    (tmp_path / "agreements").mkdir()
    draft = write(tmp_path / "agreements" / "draft.toml", out)
    from accord.policies.agreements import load_agreement

    loaded = load_agreement(draft, {"pums": config_of(fed).datasets[0].schema})
    assert loaded.id == "dsa-new" and "income" in loaded.datasets["pums"].fields
    assert loaded.valid_from == date.today()


def test_a_node_refuses_to_start_with_a_bad_agreement_naming_file_and_key(
    fed: Federation, tmp_path: Path
) -> None:
    from accord.errors import ConfigError
    from accord.node.server import start_node

    link_certs(tmp_path, fed.pki)
    copy_census(tmp_path, PUMS_PID)
    config = node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)])
    write_open_agreement(config)
    write(
        tmp_path / "agreements" / "broken.toml",
        NARROW.replace('age = ["filter", "sum"]', 'age = ["group_by"]'),
    )
    with pytest.raises(ConfigError) as info:
        start_node(config, listen="127.0.0.1:0")
    assert (
        "broken.toml" in info.value.message
        and "age" in info.value.message
        and "group_by needs" in info.value.message
    )
