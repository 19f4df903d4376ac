"""Presenting a federated release: Arrow columns and metadata, CSV/JSON round trips, text."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import pyarrow as pa

from accord.coordinator.table import column_names, format_release, to_arrow
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction
from accord.query.release import Cell, Estimate, FederatedRelease, Mechanism, ReleaseColumn, ReleaseRow

COLUMNS = (
    ReleaseColumn("district", None, "district"),
    ReleaseColumn("year", None, "year"),
    ReleaseColumn("n", AggregateFunction.COUNT, None),
    ReleaseColumn("mean_income", AggregateFunction.AVG, "income"),
)

EXPECTED_COLUMNS = [
    "district",
    "year",
    "n",
    "n_ci_low",
    "n_ci_high",
    "n_noise_scale",
    "mean_income",
    "mean_income_ci_low",
    "mean_income_ci_high",
    "mean_income_noise_scale",
    "nodes",
]


def _release(missing: dict[str, str] | None = None) -> FederatedRelease:
    def row(district: str, year: int, n: float, mean: float) -> ReleaseRow:
        count = Estimate(n, 3.6, n - 11, n + 11, Mechanism.DISCRETE_LAPLACE)
        ratio = Estimate(mean, 0.0, mean - 1234.5678, mean + 2345.6789, Mechanism.RATIO)
        total = Estimate(mean * n, 1.5e6, mean * n - 4e6, mean * n + 4e6, Mechanism.LAPLACE)
        return ReleaseRow((district, year), (Cell(count), Cell(ratio, sum=total, count=count)))

    return FederatedRelease(
        query_id="q-42",
        dataset="citizens",
        columns=COLUMNS,
        rows=(row("north", 2024, 152.0, 31234.56789), row("south, east", 2025, 17.0, 28000.123)),
        epsilon=Epsilon(Fraction(1, 2)),
        contributing_nodes=("district-a", "district-c"),
        missing=dict(missing or {}),
    )


def test_arrow_columns_types_and_metadata() -> None:
    table = to_arrow(_release({"district-b": "deadline exceeded"}))
    assert table.column_names == EXPECTED_COLUMNS
    assert table.schema.field("district").type == pa.string()
    assert table.schema.field("year").type == pa.int64()
    for name in ("n", "n_ci_low", "n_ci_high"):  # counts are integers
        assert table.schema.field(name).type == pa.int64()
    for name in ("n_noise_scale", *EXPECTED_COLUMNS[6:-1]):
        assert table.schema.field(name).type == pa.float64()
    assert table.schema.field("nodes").type == pa.string()
    assert table.column("nodes").to_pylist() == ["district-a,district-c"] * 2
    assert table.column("n").to_pylist() == [152, 17]
    assert table.column("n_ci_low").to_pylist() == [141, 6]
    assert table.column("mean_income_noise_scale").to_pylist() == [0.0, 0.0]
    meta = table.schema.metadata
    assert meta[b"accord.query_id"] == b"q-42"
    assert meta[b"accord.partial"] == b"true"
    assert json.loads(meta[b"accord.missing"]) == {"district-b": "deadline exceeded"}
    assert Fraction(meta[b"accord.epsilon"].decode()) == Fraction(1, 2)


def test_arrow_metadata_not_partial() -> None:
    meta = to_arrow(_release()).schema.metadata
    assert meta[b"accord.partial"] == b"false"
    assert json.loads(meta[b"accord.missing"]) == {}


def test_csv_round_trip() -> None:
    release = _release()
    rows = list(csv.reader(io.StringIO(format_release(release, "csv"))))
    assert rows[0] == EXPECTED_COLUMNS == column_names(release)
    assert len(rows) == 3
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["district"] == "south, east"  # quoted comma survives
    assert int(second["year"]) == 2025
    assert float(second["mean_income"]) == 28000.123  # full precision
    assert second["n_ci_high"] == "28" and second["n"] == "17"  # counts print as integers
    assert second["nodes"] == "district-a,district-c"


def test_json_round_trip() -> None:
    doc = json.loads(format_release(_release({"district-b": "unreachable"}), "json"))
    assert doc["query_id"] == "q-42"
    assert doc["dataset"] == "citizens"
    assert Fraction(doc["epsilon"]) == Fraction(1, 2)
    assert doc["partial"] is True
    assert doc["contributing_nodes"] == ["district-a", "district-c"]
    assert doc["missing"] == {"district-b": "unreachable"}
    assert doc["columns"] == EXPECTED_COLUMNS
    assert doc["rows"][0]["district"] == "north"
    assert doc["rows"][0]["year"] == 2024
    assert doc["rows"][0]["mean_income"] == 31234.56789
    assert list(doc["rows"][1]) == EXPECTED_COLUMNS
    assert doc["rows"][0]["n"] == 152 and isinstance(doc["rows"][0]["n"], int)
    assert doc["noise"] == {"n": {"scale": "3.6"}, "mean_income": {"sum": "1.5e+06", "count": "3.6"}}


def test_text_table() -> None:
    text = format_release(_release({"district-b": "deadline exceeded"}), "table")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["district", "year", "n"]
    assert "152" in lines[2] and "[141, 163]" in lines[2]  # discrete: integers
    assert "152.0" not in lines[2]
    assert "31234.57" in lines[2] and "[30000.00, 33580.25]" in lines[2]  # means: 2 decimals
    assert "nodes: district-a, district-c" in lines
    assert "PARTIAL: missing district-b (deadline exceeded)" in lines
    assert (
        "noise scale (Laplace b combined over the nodes): n 3.6; "
        "mean_income = sum (scale 1.5e+06) / count (scale 3.6)"
    ) in lines
    # aligned: the CI column ends at the same position on every data row
    assert len({len(line) for line in lines[2:4]}) == 1


def test_text_table_complete_has_no_partial_line() -> None:
    text = format_release(_release(), "table")
    assert "PARTIAL" not in text
    assert text.endswith(
        "nodes: district-a, district-c\n"
        "independent: each node added its own noise; epsilon 0.5 at each node\n"
    )
