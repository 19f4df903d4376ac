"""Edge cases of issue 10 through a real federation (node and coordinator servers over mTLS): every
query shape the grammar accepts is answered correctly or refused before any node spends epsilon;
the largest release the limits allow arrives; sums near 2^62 and near the largest float are answered
or refused from the declaration alone; a huge noise scale combines; log lines cannot be forged.

county and district-a hold ``pums`` (the census sample, 1,000 persons each). district-b holds
``wide`` (one group column with :data:`~accord.query.sql.MAX_GROUPS` 64-bit categories) and
``sums`` (values near 2^61 and 1e308 with ``max_rows = 2``), under an agreement with a minimum
group size, so each row also carries its support: the largest row the limits allow.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.cli import LOG_FORMAT, EscapingFormatter
from accord.errors import DataError, InvalidQuery, PermissionDenied
from accord.node.config import DatasetConfig, load_node_config
from accord.node.server import start_node
from accord.query.epsilon import Epsilon
from accord.query.release import FederatedRelease
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.query.sql import MAX_GROUPS
from tests.conftest import TestPki
from tests.integration.federation import (
    LISTEN,
    PUMS_PID,
    RACES,
    Federation,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    read_census,
    start_federation,
    write_node,
    write_open_agreement,
)
from tests.signing import sign_with_query_id, submit_request

WIDE_KEYS = tuple(-(2**63) + i for i in range(MAX_GROUPS))  # 10-byte varints on the wire
BIG = 2**61
HUGE = 1e308


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _wide(root: Path) -> DatasetConfig:
    path = _csv(root / "data" / "wide.csv", ["pid", "g"], [[i, WIDE_KEYS[i * 97]] for i in range(200)])
    columns = (
        ColumnSpec("pid", ColumnType.INTEGER),
        ColumnSpec("g", ColumnType.INTEGER, categories=WIDE_KEYS),
    )
    return DatasetConfig(DatasetSchema("wide", columns, "pid", 1), path, "csv", "reject")


def _sums(root: Path, name: str, max_rows: int, rows: int = 2) -> DatasetConfig:
    path = _csv(root / "data" / f"{name}.csv", ["pid", "big", "huge"], [[i, BIG, HUGE] for i in range(rows)])
    columns = (
        ColumnSpec("pid", ColumnType.INTEGER),
        ColumnSpec("big", ColumnType.INTEGER, 0, BIG),
        ColumnSpec("huge", ColumnType.FLOAT, 0.0, HUGE),
    )
    return DatasetConfig(DatasetSchema(name, columns, "pid", 1, max_rows=max_rows), path, "csv", "reject")


@pytest.fixture(scope="module")
def fed(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("edges")
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    configs = {
        n: write_node(root, node_config(root, n, [pums_dataset(root, "pums", PUMS_PID)]))
        for n in ("county", "district-a")
    }
    b = node_config(root, "district-b", [_wide(root), _sums(root, "sums", 2), _sums(root, "sums3", 3)])
    write_open_agreement(b, min_group_size=1)
    configs["district-b"] = write_node(root, b, agreement=False)
    federation = start_federation(root, pki, configs)
    yield federation
    federation.stop()


@pytest.fixture(scope="module")
def census() -> list[dict[str, Any]]:
    from tests.paths import CENSUS

    return read_census(CENSUS / PUMS_PID)


def _spent(fed: Federation) -> dict[str, tuple[Epsilon, int]]:
    with fed.client() as client:
        lines, unreachable = client.budget()
    assert not unreachable
    return {node: (ls[0].analyst_spent, ls[0].answered) for node, ls in lines.items() if ls}


def _refused_before_spending(fed: Federation, sql: str, epsilon: str = "1") -> InvalidQuery:
    before = _spent(fed)
    with fed.client() as client, pytest.raises(InvalidQuery) as info:
        client.query_release(sql, epsilon)
    assert _spent(fed) == before, f"a refused query was charged: {sql}"
    return info.value


# ---- every shape the grammar accepts: answered right, or refused before any charge ---------------

CATEGORIES = {"sex": (0, 1), "race": RACES, "married": (True, False)}


def _check_answer(release: FederatedRelease, census: list[dict[str, Any]], sql: str) -> None:
    """Each group column holds its own column's categories, every combination once, and each
    COUNT(*) is near the truth of *that* group (so keys are not swapped between columns)."""
    groups = [c for c in release.columns if c.is_group]
    keys = [tuple(row.group) for row in release.rows]
    assert len(keys) == len(set(keys)) == math.prod(len(CATEGORIES[c.column or ""]) for c in groups), sql
    for i, column in enumerate(groups):
        assert {k[i] for k in keys} == set(CATEGORIES[column.column or ""]), sql
    counts = [i for i, c in enumerate(c for c in release.columns if not c.is_group) if c.column is None]
    for row in release.rows:
        truth = 2 * sum(
            all(r[c.column or ""] == v for c, v in zip(groups, row.group, strict=True)) for r in census
        )
        for i in counts:
            e = row.cells[i].estimate
            assert abs(e.value - truth) <= 10 * e.noise_scale + 1, (sql, row.group, e.value, truth)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM pums GROUP BY sex",
        "SELECT sex, sex AS again, COUNT(*) FROM pums GROUP BY sex",
        "SELECT COUNT(*), sex FROM pums GROUP BY race, sex",
        "SELECT race, COUNT(*) FROM pums GROUP BY race, sex",
    ],
)
def test_group_shapes_that_cannot_be_answered_are_refused_before_any_charge(
    fed: Federation, sql: str
) -> None:
    """Property: a GROUP BY column left out of SELECT, or selected twice, is refused with
    INVALID_ARGUMENT (it used to fail at the coordinator after every node had charged), and no
    node's ledger moves."""
    err = _refused_before_spending(fed, sql)
    assert "not selected" in err.message or "more than once" in err.message


def test_group_keys_in_another_order_than_group_by_land_under_their_columns(
    fed: Federation, census: list[dict[str, Any]]
) -> None:
    """Property: SELECT sex, race ... GROUP BY race, sex releases sex values under sex and race
    values under race (they used to be swapped), with counts of the right groups."""
    sql = "SELECT married AS m, COUNT(*) AS n, sex, race FROM pums GROUP BY race, sex, married"
    with fed.client() as client:
        release = client.query_release(sql, "10")
    assert [c.name for c in release.columns] == ["m", "n", "sex", "race"]
    _check_answer(release, census, sql)


@st.composite
def _shapes(draw: st.DrawFn) -> tuple[str, bool]:
    """A SELECT list mixing group columns (some repeated, some aliased) and aggregates in any order,
    and a GROUP BY of any subset in any order; with whether the grammar's rules accept it."""
    group = draw(st.lists(st.sampled_from(sorted(CATEGORIES)), unique=True, max_size=3))
    picked = draw(st.lists(st.sampled_from(sorted(CATEGORIES)), max_size=4))
    aggregates = draw(
        st.lists(
            st.sampled_from(["COUNT(*)", "COUNT(age)", "SUM(age)", "AVG(income)"]), min_size=1, max_size=3
        )
    )
    items = [(c, True) for c in picked] + [(a, False) for a in aggregates]
    items = draw(st.permutations(items))
    select = []
    for i, (text, is_column) in enumerate(items):
        alias = draw(st.booleans()) or not is_column
        select.append(f"{text} AS o{i}" if alias else text)
    sql = f"SELECT {', '.join(select)} FROM pums"
    if group:
        sql += " GROUP BY " + ", ".join(draw(st.permutations(group)))
    selected = [c for c, is_column in items if is_column]
    names = [s.split(" AS ")[-1] for s in select]
    ok = sorted(selected) == sorted(group) and len(set(names)) == len(names)
    return sql, ok


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_shapes())
def test_generated_shapes_answer_or_are_refused_before_any_charge(
    fed: Federation, census: list[dict[str, Any]], shape: tuple[str, bool]
) -> None:
    """Property (generated): every query shape over group-column subsets, repeated and aliased keys
    and mixed aggregates is either answered with each key under its own column and counts of the
    right groups, or refused with INVALID_ARGUMENT before any node's ledger moves; which one is
    exactly what the grammar's rules say."""
    sql, ok = shape
    if not ok:
        _refused_before_spending(fed, sql)
        return
    with fed.client() as client:
        release = client.query_release(sql, "10")
    _check_answer(release, census, sql)


# ---- the largest release the limits allow -----------------------------------------------------


def test_the_largest_release_the_limits_allow_is_answered(fed: Federation) -> None:
    """Property: MAX_GROUPS groups of 64-bit keys, each with a count and its support (the agreement
    has a minimum group size), cross the node-to-coordinator message limit and come back whole; one
    more number per group is refused from the metadata before anything is charged."""
    with fed.client() as client:
        release = client.query_release("SELECT g, COUNT(*) AS n FROM wide GROUP BY g", "1", timeout=60)
    assert len(release.rows) == MAX_GROUPS and not release.partial
    assert {row.group[0] for row in release.rows} == set(WIDE_KEYS)
    err = _refused_before_spending(fed, "SELECT g, COUNT(*) AS n, COUNT(g) AS m FROM wide GROUP BY g")
    assert "groups; the limit is" in err.message or "would not fit" in err.message


# ---- sums near the limits, huge noise ----------------------------------------------------------


def test_an_integer_sum_at_2_to_the_62_is_answered_and_beyond_is_refused(fed: Federation) -> None:
    """Property: two rows of 2^61 under max_rows = 2 sum to exactly 2^62 and are answered with a
    finite interval near the truth (within ten interval widths: coverage itself is the
    statistical suite's to test, a 95% interval misses one run in twenty); the same bounds under
    max_rows = 3 could pass 2^62 and are refused from the declaration, naming max_rows, whatever
    the data holds."""
    with fed.client() as client:
        release = client.query_release("SELECT SUM(big) AS s FROM sums", "10")
    e = release.rows[0].cells[0].estimate
    assert math.isfinite(e.value) and math.isfinite(e.ci_low) and math.isfinite(e.ci_high)
    assert e.ci_low <= e.value <= e.ci_high
    assert abs(e.value - 2**62) <= 10 * (e.ci_high - e.ci_low)
    err = _refused_before_spending(fed, "SELECT SUM(big) FROM sums3")
    assert "max_rows = 3" in err.message and "node config" in err.message


def test_a_float_sum_near_the_largest_float_is_refused_not_nan(fed: Federation) -> None:
    """Property: values near 1e308 (their sum is infinite) are refused from the declared bounds
    before execution, for SUM and AVG alike, never answered with NaN or a data-dependent error."""
    for fn in ("SUM", "AVG"):
        err = _refused_before_spending(fed, f"SELECT {fn}(huge) FROM sums")
        assert f"{fn}(huge)" in err.message and "narrow the bounds of huge" in err.message


def test_a_file_with_more_rows_than_max_rows_is_refused_at_load(pki: TestPki, tmp_path: Path) -> None:
    """Property: max_rows is checked when the node loads the file: more rows stop it with a message
    naming max_rows (so the bound the sums rely on holds)."""
    link_certs(tmp_path, pki)
    (tmp_path / "data").mkdir()
    path = write_node(tmp_path, node_config(tmp_path, "county", [_sums(tmp_path, "sums", 2, rows=3)]))
    with pytest.raises(DataError, match="more than max_rows = 2"):
        start_node(load_node_config(path), listen=LISTEN).stop(grace=0)


def test_a_huge_noise_scale_is_combined_not_a_crash(fed: Federation) -> None:
    """Property: at epsilon 1e-60 (scales near 1e60, one node and two) the coordinator answers with
    finite intervals (it used to raise ZeroDivisionError for one discrete term)."""
    with fed.client() as client:
        one = client.query_release("SELECT COUNT(*) AS n FROM sums", "1e-60")
        two = client.query_release("SELECT COUNT(*) AS n, SUM(income) AS s FROM pums", "1e-60")
    assert one.rows and two.rows  # one's group may be suppressed (its support was combined first)
    for release in (one, two):
        for row in release.rows:
            for cell in row.cells:
                e = cell.estimate
                assert math.isfinite(e.ci_low) and math.isfinite(e.ci_high) and e.noise_scale > 1e50


# ---- logs ------------------------------------------------------------------------------------


def test_a_newline_in_a_query_id_forges_no_log_line(fed: Federation) -> None:
    """Property: a query id with a newline is refused with INVALID_ARGUMENT before any node is
    charged, and everything the servers log meanwhile, written with the command line's format, is
    one line per record with no forged line and no control character."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger("accord")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    before = _spent(fed)
    try:
        for query_id in ("q1\n2026-12-03 INFO accord.node: FORGED", "q2\r\x1b[2K FORGED"):
            signed = sign_with_query_id(fed.pki.analyst("alice"), "SELECT COUNT(*) FROM pums", query_id)
            channel, stub = fed.coordinator_stub()
            with channel, pytest.raises(grpc.RpcError) as info:
                stub.Submit(submit_request(signed), timeout=20)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # a node's refusal that the coordinator logs, echoing the analyst's own text
        with fed.client() as client, pytest.raises(PermissionDenied):
            client.query_release('SELECT COUNT("x\nFORGED") FROM pums', "1")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert _spent(fed) == before
    text = stream.getvalue()
    assert not any(ch in text for ch in "\r\x1b")
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) accord")
    forged = [line for line in text.splitlines() if "FORGED" in line and not record.match(line)]
    assert forged == []
