"""Consent: the files operators import (a bad line anywhere changes nothing, and every bad line is
reported with its number), the durable register with its full history, what a choice means under
opt-in and opt-out purposes, and the engine leaving excluded people out of every number: compared,
at a very large epsilon, with the true answer computed directly on the data without them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from accord.errors import ConfigError
from accord.node.consent import ConsentRegister
from accord.node.servicer import serialize_release
from accord.node.state import MemoryState
from accord.policies.consent import (
    ConsentFileError,
    ConsentRecord,
    ConsentStatus,
    may_use,
    parse_consent_csv,
    parse_opt_out_list,
)
from accord.policies.identity import Identity
from accord.protos import convert
from accord.protos.v1 import node_pb2
from accord.query.schema import ColumnType
from tests.conftest import TestPki
from tests.signing import node_service, open_agreement, sign
from tests.unit.nodedata import PUMS_DUP, pums, pums_rows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HEADER = "person,purpose,status,timestamp,source\n"


def write(tmp_path: Path, text: str, name: str = "consent.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- the files -----------------------------------------------------------------------------------


def test_a_good_csv_is_read_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "P1,HOUSING,given,2026-11-30T10:00:00Z,web form\n"
        + "\n"
        + "P2,HOUSING,refused,2026-11-30,letter\n"
        + '"P,3",RESEARCH,withdrawn,2026-11-30T10:00:00+01:00,"phone, then letter"\n',
    )
    records = parse_consent_csv(path)
    assert [r.person for r in records] == ["P1", "P2", "P,3"]
    assert records[1].timestamp == datetime(2026, 11, 30, tzinfo=UTC)
    assert records[2].timestamp == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert records[2].status is ConsentStatus.WITHDRAWN and records[2].source == "phone, then letter"


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_returned(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "P1,HOUSING,given,2026-11-30T10:00:00Z,web\n"  # 2: good
        + "P2,HOUSING,maybe,2026-11-30T10:00:00Z,web\n"  # 3: status
        + "P3,HOUSING,given,yesterday,web\n"  # 4: time
        + "P4,HOUSING,given,2026-11-30T10:00:00,web\n"  # 5: no zone
        + ",HOUSING,given,2026-11-30T10:00:00Z,web\n"  # 6: no person
        + "P6,HOUS ING,given,2026-11-30T10:00:00Z,web\n"  # 7: purpose
        + "P7,HOUSING,given\n"  # 8: fields
        + "P8,HOUSING,given,2026-11-30T10:00:00Z, \n",  # 9: source
    )
    with pytest.raises(ConsentFileError) as info:
        parse_consent_csv(path)
    assert [n for n, _ in info.value.lines] == [3, 4, 5, 6, 7, 8, 9]
    message = info.value.message
    assert "7 bad line(s), nothing was imported" in message and str(path) in message
    assert "line 3: status 'maybe'" in message and "line 8: 3 fields, expected 5" in message
    assert "P3" not in message and "P7" not in message  # person identifiers are never quoted


def test_a_wrong_header_or_encoding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConsentFileError, match="line 1: the header must be person,purpose,status"):
        parse_consent_csv(write(tmp_path, "id,purpose,status,timestamp,source\n"))
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(HEADER.encode() + "Pé,HOUSING,given,2026-11-30,x\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read it as UTF-8"):
        parse_consent_csv(bad)
    with pytest.raises(ConfigError, match="no such file"):
        parse_consent_csv(tmp_path / "missing.csv")


def test_an_opt_out_list_is_read_as_refusals(tmp_path: Path) -> None:
    path = write(tmp_path, "# national opt-out\nP1\n\n  P2  \n" + "x" * 300 + "\n", "opt-out.txt")
    with pytest.raises(ConsentFileError) as info:
        parse_opt_out_list(path, "HOUSING", "NDOP", NOW)
    assert [n for n, _ in info.value.lines] == [5]
    path = write(tmp_path, "# national opt-out\nP1\n\n  P2  \n", "opt-out.txt")
    records = parse_opt_out_list(path, "HOUSING", "NDOP", NOW)
    assert [(r.person, r.status) for r in records] == [
        ("P1", ConsentStatus.REFUSED),
        ("P2", ConsentStatus.REFUSED),
    ]
    with pytest.raises(ConfigError, match="purpose"):
        parse_opt_out_list(path, "bad purpose", "NDOP", NOW)


def test_what_a_choice_means() -> None:
    given, withdrawn, refused = ConsentStatus.GIVEN, ConsentStatus.WITHDRAWN, ConsentStatus.REFUSED
    assert [may_use("opt-in", s) for s in (None, given, withdrawn, refused)] == [False, True, False, False]
    assert [may_use("opt-out", s) for s in (None, given, withdrawn, refused)] == [True, True, False, False]


# ---- the register --------------------------------------------------------------------------------


def record(person: str, status: ConsentStatus, day: int, purpose: str = "HOUSING") -> ConsentRecord:
    return ConsentRecord(person, purpose, status, datetime(2026, 11, day, tzinfo=UTC), "test")


def test_the_register_keeps_every_record_and_the_latest_choice_wins(tmp_path: Path) -> None:
    register = ConsentRegister(tmp_path / "consent.sqlite3")
    assert register.version() == 0
    register.add([record("P1", ConsentStatus.GIVEN, 1), record("P2", ConsentStatus.GIVEN, 1)], NOW)
    register.add([record("P1", ConsentStatus.WITHDRAWN, 5)], NOW)
    register.add([record("P1", ConsentStatus.GIVEN, 3)], NOW)  # older than the withdrawal: history only
    assert register.current("P1") == {"HOUSING": ConsentStatus.WITHDRAWN}
    assert [r.status for r, _ in register.history("P1")] == [
        ConsentStatus.GIVEN,
        ConsentStatus.WITHDRAWN,
        ConsentStatus.GIVEN,
    ]
    assert register.version() == 4
    assert register.counts() == {"HOUSING": {"withdrawn": 1, "given": 1}}
    opt_in = register.filter("HOUSING", "opt-in")
    assert (opt_in.mode, opt_in.persons, opt_in.version) == ("include", frozenset({"P2"}), 4)
    opt_out = register.filter("HOUSING", "opt-out")
    assert (opt_out.mode, opt_out.persons) == ("exclude", frozenset({"P1"}))
    assert register.filter("OTHER", "opt-out").persons == frozenset()
    register.close()
    again = ConsentRegister(tmp_path / "consent.sqlite3")  # durable
    assert again.current("P1") == {"HOUSING": ConsentStatus.WITHDRAWN} and again.version() == 4
    again.close()


def test_an_import_is_all_or_nothing(tmp_path: Path) -> None:
    register = ConsentRegister(tmp_path / "consent.sqlite3")
    register.add([record("P1", ConsentStatus.GIVEN, 1)], NOW)

    good = record("P2", ConsentStatus.GIVEN, 1)
    broken = object.__new__(ConsentRecord)  # no fields at all: writing it fails half-way
    with pytest.raises(AttributeError):
        register.add([good, broken], NOW)
    assert register.current("P2") == {} and register.version() == 1
    register.close()


def test_a_file_that_is_not_a_register_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="not an Accord consent register"):
        ConsentRegister(other)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="cannot be used"):
        ConsentRegister(junk)


# ---- the engine leaves them out ------------------------------------------------------------------

CALLER = Identity("coordinator", "coordinator")
EPSILON = "100"  # noise scale 1/100 per count: every count is exact after rounding


def _ask(
    service: object, pki: TestPki, sql: str, agreement: str = "open"
) -> list[tuple[object, list[float]]]:
    """Per group, each aggregate's value; SUMs come with five times their 95% half-width (their
    noise at epsilon 100 is a few units: outside that with probability about 0.05**5)."""
    payload = service.answer(  # type: ignore[attr-defined]
        CALLER, sign(pki.analyst(), sql, EPSILON, agreement=agreement), serialize_release
    )
    release = convert.release_from_pb(node_pb2.NodeRelease.FromString(payload))
    return [(row.group, [c.estimate.value for c in row.cells]) for row in release.rows]


def _slack(service: object, pki: TestPki, sql: str) -> float:
    payload = service.answer(  # type: ignore[attr-defined]
        CALLER, sign(pki.analyst(), sql, EPSILON), serialize_release
    )
    release = convert.release_from_pb(node_pb2.NodeRelease.FromString(payload))
    estimate = release.rows[0].cells[-1].estimate
    return 5 * (estimate.ci_high - estimate.value)


def _truth(
    rows: list[dict], keep: set[int] | None, k: int, group: str | None
) -> dict[object, tuple[int, int]]:
    """COUNT(*) and SUM(age) per group over the rows of kept people, at most k rows per person (the
    engine keeps rows of a person in its own order: only the count is compared when people exceed k)."""
    seen: dict[int, int] = {}
    out: dict[object, list[int]] = {}
    for r in rows:
        if keep is not None and r["pid"] not in keep:
            continue
        seen[r["pid"]] = seen.get(r["pid"], 0) + 1
        if seen[r["pid"]] > k:
            continue
        key = r[group] if group else ()
        acc = out.setdefault(key, [0, 0])
        acc[0] += 1
        acc[1] += r["age"]
    return {key: (n, s) for key, (n, s) in out.items()}


@pytest.mark.parametrize("model", ["opt-out", "opt-in"])
@pytest.mark.parametrize("k", [1, 4])
def test_excluded_people_count_nowhere(pki: TestPki, tmp_path: Path, model: str, k: int) -> None:
    """Property: at epsilon 100 (noise far below 1), COUNT(*) with and without WHERE and GROUP BY,
    and SUM(age), equal the truth computed with the csv module over the people the purpose may
    count: for opt-out, everyone but those who withdrew or refused; for opt-in, only those who
    gave consent. Bounding (k) is applied after consent, so the load-time shortcuts (whole-file
    counts, per-person ranks) cannot bring an excluded person back."""
    rows = pums_rows(PUMS_DUP)
    people = sorted({r["pid"] for r in rows})
    register = ConsentRegister(tmp_path / "consent.sqlite3")
    withdrawn = {p for p in people if p % 10 == 3}
    refused = {p for p in people if p % 10 == 7}
    given = {p for p in people if p % 3 == 0} - withdrawn
    records = [record(str(p), ConsentStatus.GIVEN, 1) for p in sorted(given | withdrawn)]
    records += [record(str(p), ConsentStatus.WITHDRAWN, 2) for p in sorted(withdrawn)]
    records += [record(str(p), ConsentStatus.REFUSED, 2) for p in sorted(refused)]
    register.add(records, NOW)
    config = pums(k=k)
    agreement = open_agreement({"pums": config.schema}, consent=model, purpose="HOUSING")
    service = node_service(pki, (config,), agreements=(agreement,), consent=register, state=MemoryState("n"))
    keep = (set(people) - withdrawn - refused) if model == "opt-out" else given - refused - withdrawn
    assert 0 < len(keep) < len(people)

    total = _ask(service, pki, "SELECT COUNT(*) AS n FROM pums")
    assert round(total[0][1][0]) == sum(n for n, _ in _truth(rows, keep, k, None).values())
    grouped = "SELECT sex, COUNT(*) AS n, SUM(age) AS s FROM pums GROUP BY sex"
    by_sex = dict(_ask(service, pki, grouped))
    slack = _slack(service, pki, grouped)
    assert slack < 200  # against sums of tens of thousands
    truth = _truth(rows, keep, k, "sex")
    for (sex,), (n, s) in by_sex.items():
        assert round(n) == truth.get(sex, (0, 0))[0]
        if k == 4:  # no one has more than 4 rows: nothing is bounded, the sum is the truth + noise
            assert abs(s - truth.get(sex, (0, 0))[1]) <= slack
    filtered = _ask(service, pki, "SELECT COUNT(*) AS n FROM pums WHERE age > 40")
    older = [r for r in rows if r["age"] > 40]
    if k == 4:
        assert round(filtered[0][1][0]) == sum(n for n, _ in _truth(older, keep, k, None).values())
    else:  # at most one row per person, whichever the engine keeps: between the bounds
        persons_with_older = {r["pid"] for r in older} & keep
        assert round(filtered[0][1][0]) <= len(persons_with_older)

    # a consent change applies to every query that starts after it
    newly = sorted(keep)[:25]
    register.add([record(str(p), ConsentStatus.WITHDRAWN, 20) for p in newly], NOW)
    after = _ask(service, pki, "SELECT COUNT(*) AS n FROM pums")
    assert round(after[0][1][0]) == sum(n for n, _ in _truth(rows, keep - set(newly), k, None).values())
    register.close()


def test_without_a_register_nobody_is_left_out(pki: TestPki) -> None:
    rows = pums_rows(PUMS_DUP)
    service = node_service(pki, (pums(k=4),))
    total = _ask(service, pki, "SELECT COUNT(*) AS n FROM pums")
    assert round(total[0][1][0]) == len(rows)


# ---- found by attacking the register -------------------------------------------------------------


def test_choices_dated_in_the_future_are_refused(tmp_path: Path) -> None:
    """Property: a record dated in the future would outrank every later change until its date, so
    a file holding one is refused (the line named), and the register refuses one added directly."""
    path = write(
        tmp_path,
        HEADER + "P1,HOUSING,given,2062-01-01T00:00:00Z,web\nP2,HOUSING,given,2026-11-30T10:00:00Z,web\n",
    )
    with pytest.raises(ConsentFileError) as info:
        parse_consent_csv(path, now=NOW)
    assert [n for n, _ in info.value.lines] == [2] and "future" in info.value.message
    register = ConsentRegister(tmp_path / "consent.sqlite3")
    with pytest.raises(ConfigError, match="in the future"):
        register.add(
            [ConsentRecord("P1", "HOUSING", ConsentStatus.GIVEN, datetime(2062, 1, 1, tzinfo=UTC), "x")], NOW
        )
    assert register.version() == 0
    register.close()


def test_unreadable_fields_and_times_are_bad_lines_not_crashes(tmp_path: Path) -> None:
    huge = write(tmp_path, HEADER + 'P1,HOUSING,given,2026-11-30,"' + "x" * 200_000 + '"\n', "huge.csv")
    with pytest.raises(ConsentFileError, match="not a CSV file the import can read"):
        parse_consent_csv(huge, now=NOW)
    early = write(tmp_path, HEADER + "P1,HOUSING,given,0001-01-01T00:30:00+01:00,web\n", "early.csv")
    with pytest.raises(ConsentFileError) as info:
        parse_consent_csv(early, now=NOW)
    assert [n for n, _ in info.value.lines] == [2]


@pytest.mark.parametrize(
    ("declared", "written", "matches"),
    [
        (ColumnType.INTEGER, "42", True),
        (ColumnType.INTEGER, "+42", False),
        (ColumnType.INTEGER, "4_2", False),
        (ColumnType.INTEGER, "٤٢", False),
        (ColumnType.INTEGER, "042", False),
        (ColumnType.FLOAT, "42.5", True),
        (ColumnType.FLOAT, "943 476 5919", False),
        (ColumnType.BOOLEAN, "true", True),
        (ColumnType.BOOLEAN, "maybe", False),
        (ColumnType.STRING, "ab12", True),
        (ColumnType.STRING, "AB12", False),
    ],
)
def test_identifiers_match_only_as_the_person_column_writes_them(
    tmp_path: Path, declared: ColumnType, written: str, matches: bool
) -> None:
    """Property: an opt-out is applied to the person whose identifier it names as the column holds
    it; any other spelling matches nobody, and none of them breaks the query (a float or boolean
    person column with identifiers that are not numbers or booleans included)."""
    import duckdb

    from accord.node.backend import PersonFilter
    from accord.node.duckdb.persons import PersonTables

    value = {
        ColumnType.INTEGER: 42,
        ColumnType.FLOAT: 42.5,
        ColumnType.BOOLEAN: True,
        ColumnType.STRING: "ab12",
    }
    con = duckdb.connect()
    sql_type = {ColumnType.INTEGER: "BIGINT", ColumnType.FLOAT: "DOUBLE", ColumnType.BOOLEAN: "BOOLEAN",
                ColumnType.STRING: "VARCHAR"}[declared]  # fmt: skip
    con.execute(f"CREATE TABLE d (pid {sql_type})")
    con.execute("INSERT INTO d VALUES (?)", [value[declared]])
    tables = PersonTables(con)
    name = tables.table(PersonFilter("HOUSING", "exclude", frozenset({written, "junk"}), 1), declared)
    left = con.execute(f"SELECT count(*) FROM d WHERE pid NOT IN (SELECT person FROM {name})").fetchone()
    assert left == ((0 if matches else 1),)
