"""What each demo authority declares: its datasets, their columns and public metadata.

The single source for both the Parquet files :mod:`accord.demo.population` writes and the node
configs :mod:`accord.demo.layout` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import pyarrow as pa

from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema, SecureAggregation

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
    "DemoDataset",
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

_ARROW = {ColumnType.INTEGER: pa.int64(), ColumnType.STRING: pa.string(), ColumnType.BOOLEAN: pa.bool_()}


@dataclass(frozen=True)
class DemoDataset:
    """One declared dataset: the single source for both the Parquet files and the node configs."""

    schema: DatasetSchema
    on_violation: str = "reject"
    secure: SecureAggregation | None = None
    """Answered only by secure aggregation (every holder declares the same setting)."""

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _ARROW[c.type], nullable=False) for c in self.schema.columns])


ALL_WARDS = tuple(w for d in DISTRICTS.values() for w in WARDS[d])
_BOOL = (True, False)
_STRING, _INTEGER, _BOOLEAN = ColumnType.STRING, ColumnType.INTEGER, ColumnType.BOOLEAN
_PLACE = (
    ColumnSpec("person_id", _STRING),
    ColumnSpec("district", _STRING, categories=tuple(DISTRICTS.values())),
    ColumnSpec("ward", _STRING, categories=ALL_WARDS),
)
CITIZENS = DemoDataset(
    DatasetSchema(
        name="citizens",
        description="People this authority serves, one row per person (synthetic)",
        privacy_unit="person_id",
        max_rows_per_person=1,
        columns=(
            *_PLACE,
            ColumnSpec("age_band", _STRING, categories=AGE_BANDS),
            ColumnSpec("age", _INTEGER, 0, 100),
            ColumnSpec("household_size", _INTEGER, 1, 8),
            ColumnSpec("income", _INTEGER, 0, 250_000),
            *(
                ColumnSpec(flag, _BOOLEAN, categories=_BOOL)
                for flag in (
                    "claims_housing_benefit",
                    "claims_council_tax_support",
                    "child_in_social_care",
                    "adult_social_care",
                    "free_school_meals",
                )
            ),
        ),
    ),
    # Held by all three authorities: the coordinator learns only the combined answer, whose noise is
    # that of one trusted curator (each node adds a third of it, assuming all three honest).
    secure=SecureAggregation(honest_nodes=3, delta="1e-9", holders=("county", "district-a", "district-b")),
)
SERVICE_CONTACTS = DemoDataset(
    DatasetSchema(
        name="service_contacts",
        description="Contacts with county services, 1-6 rows per person (synthetic)",
        privacy_unit="person_id",
        # rows beyond 3 per person are bounded away at query time: not a violation of the declaration
        max_rows_per_person=3,
        columns=(
            *_PLACE,
            ColumnSpec("service", _STRING, categories=SERVICES),
            ColumnSpec("duration_minutes", _INTEGER, 0, 600),
        ),
    )
)
DATASETS: Mapping[str, tuple[DemoDataset, ...]] = MappingProxyType(
    {"county": (CITIZENS, SERVICE_CONTACTS), "district-a": (CITIZENS,), "district-b": (CITIZENS,)}
)
