"""What each demo authority declares: its datasets, their columns and public metadata.

The single source for both the Parquet files :mod:`accord.demo.population` writes and the node
configs :mod:`accord.demo.layout` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import pyarrow as pa

__all__ = [
    "AGE_BANDS",
    "ALL_WARDS",
    "CITIZENS",
    "DATASETS",
    "DISTRICTS",
    "NODES",
    "SERVICES",
    "SERVICE_CONTACTS",
    "WARDS",
    "ColumnDecl",
    "DatasetDecl",
]

NODES: tuple[str, ...] = ("county", "district-a", "district-b")
DISTRICTS: Mapping[str, str] = MappingProxyType({"district-a": "Northbrook", "district-b": "Southdale"})
WARDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Northbrook": ("Abbey", "Brookside", "Castle Hill", "Millfield", "St Mary's", "Weavers"),
        "Southdale": ("Bridgend", "Dale Park", "Harbour", "Kingsmead", "Orchard", "Westgate"),
    }
)
AGE_BANDS = ("0-17", "18-34", "35-64", "65+")
SERVICES = ("children's social care", "adult social care", "education", "highways", "libraries")

Category = str | bool


@dataclass(frozen=True)
class ColumnDecl:
    """One declared column: the single source for both the Parquet schema and the node TOML."""

    name: str
    type: str  # "integer" | "string" | "boolean"
    lower: int | None = None
    upper: int | None = None
    categories: tuple[Category, ...] | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return {"integer": pa.int64(), "string": pa.string(), "boolean": pa.bool_()}[self.type]


@dataclass(frozen=True)
class DatasetDecl:
    name: str
    description: str
    max_rows_per_person: int
    on_violation: str
    columns: tuple[ColumnDecl, ...]
    privacy_unit: str = "person_id"

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=False) for c in self.columns])


ALL_WARDS = tuple(w for d in DISTRICTS.values() for w in WARDS[d])
_BOOL = (True, False)
_PLACE = (
    ColumnDecl("person_id", "string"),
    ColumnDecl("district", "string", categories=tuple(DISTRICTS.values())),
    ColumnDecl("ward", "string", categories=ALL_WARDS),
)
CITIZENS = DatasetDecl(
    name="citizens",
    description="People this authority serves, one row per person (synthetic)",
    max_rows_per_person=1,
    on_violation="reject",
    columns=(
        *_PLACE,
        ColumnDecl("age_band", "string", categories=AGE_BANDS),
        ColumnDecl("age", "integer", 0, 100),
        ColumnDecl("household_size", "integer", 1, 8),
        ColumnDecl("income", "integer", 0, 250_000),
        *(
            ColumnDecl(flag, "boolean", categories=_BOOL)
            for flag in (
                "claims_housing_benefit",
                "claims_council_tax_support",
                "child_in_social_care",
                "adult_social_care",
                "free_school_meals",
            )
        ),
    ),
)
SERVICE_CONTACTS = DatasetDecl(
    name="service_contacts",
    description="Contacts with county services, 1-6 rows per person (synthetic)",
    max_rows_per_person=3,
    on_violation="reject",  # rows beyond 3 per person are bounded away at query time, not a violation
    columns=(
        *_PLACE,
        ColumnDecl("service", "string", categories=SERVICES),
        ColumnDecl("duration_minutes", "integer", 0, 600),
    ),
)
DATASETS: Mapping[str, tuple[DatasetDecl, ...]] = MappingProxyType(
    {"county": (CITIZENS, SERVICE_CONTACTS), "district-a": (CITIZENS,), "district-b": (CITIZENS,)}
)
