"""A synthetic county and two districts, for the demo and the benchmarks.

One population of people lives in the county; each lives in one district and one ward. Three
authorities hold records about them, all as a dataset named ``citizens`` with the same schema
(:data:`CITIZENS`), so the federation can combine their answers:

- ``district-a`` (Northbrook) and ``district-b`` (Southdale) hold one row per resident they serve
  (council tax, electoral register, benefits): almost every adult and most children. Districts
  administer housing benefit and council tax support, so ``claims_housing_benefit`` and
  ``claims_council_tax_support`` are accurate there. Their housing casework learns about children's
  social care only for benefit claimants (``child_in_social_care`` = truth AND housing benefit);
  they know nothing of adult social care or free school meals (always false).
- ``county`` holds one row per person using county services (education, social care, libraries,
  highways) in both districts: nearly every school-age child, everyone in social care or on free
  school meals, and a share of other adults. ``child_in_social_care``, ``adult_social_care`` and
  ``free_school_meals`` are accurate there; the county knows benefit claims only of people it has
  assessed (flag = truth AND in social care or on free school meals).

Most people in the county's records are also in their district's records, under the same
``person_id``: the overlap a federation has to live with. The county also holds
``service_contacts`` (1-6 rows per person; declared ``max_rows_per_person = 3``) to show per-person
contribution bounding.

Semantics of the flags: ``claims_housing_benefit`` and ``child_in_social_care`` describe the
person's household; ``claims_council_tax_support`` and ``adult_social_care`` are adults' own;
``free_school_meals`` is a school-age child's own.

Generation is column-wise (pyarrow compute over uniform draws), so 100,000 people per authority
take well under a second or two.
"""

from __future__ import annotations

import math
import random
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import pyarrow as pa
import pyarrow.compute as pc

from accord.demo.datasets import (
    AGE_BANDS,
    ALL_WARDS,
    CITIZENS,
    DISTRICTS,
    NODES,
    SERVICE_CONTACTS,
    SERVICES,
    DemoDataset,
)

__all__ = [
    "Population",
    "generate_population",
    "population_for",
]

# Relative ward sizes within each district, in the order of accord.demo.datasets.WARDS.
_WARD_WEIGHTS = (0.22, 0.18, 0.15, 0.17, 0.12, 0.16)
_DISTRICT_WEIGHTS = (0.53, 0.47)


# ---------------------------------------------------------------------------------------------
# Column-wise generation helpers. All randomness here comes from random.Random(seed) and is for
# SYNTHETIC TEST DATA ONLY; it is never used, and must never be used, for privacy noise (that
# comes only from OpenDP samplers on the node).


def _uniform(rng: random.Random, n: int) -> pa.Array:
    """n uniform float64 draws in [0, 1), from one bulk call (32 random bits each)."""
    raw = rng.randbytes(4 * n)
    if sys.byteorder == "big":  # randbytes is little-endian; keep results platform-independent
        words = array("I")
        words.frombytes(raw)
        words.byteswap()
        raw = words.tobytes()
    ints = pa.Array.from_buffers(pa.uint32(), n, [None, pa.py_buffer(raw)])
    return pc.divide(pc.cast(ints, pa.float64()), float(2**32))


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, acc, out = sum(weights), 0.0, []
    for w in weights[:-1]:
        acc += w
        out.append(acc / total)
    return out


def _pick(u: pa.Array, weights: Sequence[float]) -> pa.Array:
    """Index (int32) of the category each uniform draw falls in, for fixed weights."""
    return _bucket(u, _cumulative(weights))


def _bucket(u: pa.Array, thresholds: Sequence[float]) -> pa.Array:
    """How many of the (ascending) thresholds each value reaches, as int32."""
    idx = pa.repeat(pa.scalar(0, pa.int32()), len(u))
    for t in thresholds:
        idx = pc.add(idx, pc.cast(pc.greater_equal(u, t), pa.int32()))
    return idx


def _pick_by_group(u: pa.Array, group: pa.Array, table: Sequence[Sequence[float]]) -> pa.Array:
    """Like :func:`_pick`, with a weight row chosen per draw by ``group``."""
    cums = [_cumulative(row) for row in table]
    idx = pa.repeat(pa.scalar(0, pa.int32()), len(u))
    for k in range(len(cums[0])):
        thresholds = pc.take(pa.array([c[k] for c in cums], pa.float64()), group)
        idx = pc.add(idx, pc.cast(pc.greater_equal(u, thresholds), pa.int32()))
    return idx


def _bernoulli(u: pa.Array, p: pa.Array | float) -> pa.Array:
    return pc.less(u, p)


def _where(cond: pa.Array, a: pa.Array | float, b: pa.Array | float) -> pa.Array:
    return pc.if_else(cond, a, b)


def _between(x: pa.Array, lo: int, hi: int) -> pa.Array:
    return pc.and_(pc.greater_equal(x, lo), pc.less_equal(x, hi))


# Age: bands (lo, hi, share) roughly like an English shire county.
_AGE_BANDS = (
    (0, 4, 5.3), (5, 17, 15.0), (18, 24, 8.0), (25, 34, 12.0), (35, 44, 12.2), (45, 54, 13.2),
    (55, 64, 13.0), (65, 74, 10.8), (75, 84, 7.3), (85, 94, 2.9), (95, 100, 0.3),
)  # fmt: skip
# Household size 1..8 by age group (child, 18-34, 35-64, 65+).
_HOUSEHOLD = (
    (0.0, 0.06, 0.28, 0.36, 0.18, 0.07, 0.03, 0.02),
    (0.22, 0.33, 0.20, 0.15, 0.06, 0.02, 0.01, 0.01),
    (0.17, 0.33, 0.19, 0.20, 0.07, 0.02, 0.01, 0.01),
    (0.40, 0.50, 0.06, 0.02, 0.01, 0.005, 0.0025, 0.0025),
)
# One independent stream of uniform draws per attribute, in this order (part of the seed contract).
_DRAWS = (
    "district", "ward", "age_band", "age", "household", "work", "income", "hb", "cts", "csc", "asc", "fsm",
    "in_district", "in_county",
)  # fmt: skip
_CONTACTS = (0.34, 0.24, 0.16, 0.11, 0.08, 0.07)  # 1..6 contacts per person
# Service weights (order of SERVICES) by group: child, child in care, adult, adult in care,
# adult whose household has a child in care.
_SERVICE_MIX = (
    (0.0, 0.0, 0.65, 0.05, 0.30),
    (0.45, 0.0, 0.35, 0.02, 0.18),
    (0.0, 0.0, 0.08, 0.47, 0.45),
    (0.0, 0.6, 0.02, 0.13, 0.25),
    (0.35, 0.0, 0.15, 0.25, 0.25),
)
_DURATION = ((30, 600), (15, 600), (20, 240), (0, 30), (5, 180))  # minutes, by service


@dataclass(frozen=True)
class Population:
    """The whole synthetic county. ``people`` holds every resident with true attributes plus the
    internal columns ``known_to_district``/``known_to_county``; ``datasets`` is what each node holds."""

    size: int
    seed: int
    people: pa.Table
    datasets: Mapping[str, Mapping[str, pa.Table]]


def generate_population(people: int, seed: int) -> Population:
    """``people`` residents of the county, deterministic for ``seed``."""
    if people < 1:
        raise ValueError("people must be at least 1")
    rng = random.Random(seed)  # synthetic data only; never privacy noise
    n = people
    u = {name: _uniform(rng, n) for name in _DRAWS}
    pid = pc.binary_join_element_wise(
        "P", pc.utf8_lpad(pc.cast(pa.array(range(1, n + 1), pa.int64()), pa.string()), 7, "0"), ""
    )
    district_idx = _pick(u["district"], _DISTRICT_WEIGHTS)
    district = pc.take(pa.array(list(DISTRICTS.values())), district_idx)
    ward_idx = pc.add(pc.multiply(district_idx, len(_WARD_WEIGHTS)), _pick(u["ward"], _WARD_WEIGHTS))
    ward = pc.take(pa.array(ALL_WARDS), ward_idx)

    band = _pick(u["age_band"], [b[2] for b in _AGE_BANDS])
    lo = pc.take(pa.array([b[0] for b in _AGE_BANDS], pa.int64()), band)
    width = pc.take(pa.array([b[1] - b[0] + 1 for b in _AGE_BANDS], pa.float64()), band)
    age = pc.add(lo, pc.cast(pc.floor(pc.multiply(u["age"], width)), pa.int64()))
    group = _bucket(age, (18, 35, 65))  # index into AGE_BANDS
    age_band = pc.take(pa.array(AGE_BANDS), group)
    household = pc.add(pc.cast(_pick_by_group(u["household"], group, _HOUSEHOLD), pa.int64()), 1)
    child, adult = pc.less(age, 18), pc.greater_equal(age, 18)

    # Income: log-logistic around an age-dependent median (logistic ≈ normal, heavier tails).
    w = pc.add(pc.multiply(u["income"], 1.0 - 2e-9), 1e-9)
    z = pc.multiply(pc.ln(pc.divide(w, pc.subtract(1.0, w))), math.sqrt(3) / math.pi)
    median = _where(pc.less(age, 25), 16_000.0, _where(pc.less(age, 65), 31_000.0, 17_500.0))
    earned = pc.multiply(median, pc.exp(pc.multiply(z, 0.6)))
    teen_job = pc.multiply(w, 6_000.0)
    out_of_work = _where(pc.less(age, 25), 0.25, _where(pc.less(age, 65), 0.10, 0.02))
    income_f = _where(
        child,
        _where(pc.and_(pc.greater_equal(age, 16), _bernoulli(u["work"], 0.2)), teen_job, 0.0),
        _where(_bernoulli(u["work"], out_of_work), 0.0, earned),
    )
    hundreds = pc.round(pc.divide(pc.min_element_wise(income_f, 250_000.0), 100.0))
    income = pc.cast(pc.multiply(hundreds, 100.0), pa.int64())

    low = pc.less(income, 12_000)
    hb = _bernoulli(
        u["hb"], _where(child, 0.14, _where(low, 0.30, _where(pc.less(income, 20_000), 0.10, 0.015)))
    )
    cts = pc.and_(adult, _bernoulli(u["cts"], _where(hb, 0.85, _where(low, 0.12, 0.01))))
    parentish = pc.and_(pc.greater_equal(household, 2), pc.less(age, 60))
    csc = _bernoulli(u["csc"], _where(parentish, _where(hb, 0.05, 0.012), 0.0))
    asc_p = _where(child, 0.0, _where(pc.less(age, 65), 0.012, _where(pc.less(age, 80), 0.05, 0.2)))
    asc = _bernoulli(u["asc"], asc_p)
    fsm = pc.and_(_between(age, 4, 16), _bernoulli(u["fsm"], _where(hb, 0.75, 0.10)))

    county_service = pc.or_(pc.or_(csc, asc), fsm)
    in_district = pc.or_(pc.or_(hb, cts), _bernoulli(u["in_district"], _where(child, 0.70, 0.95)))
    county_p = _where(_between(age, 4, 17), 0.97, _where(child, 0.35, _where(pc.less(age, 65), 0.38, 0.55)))
    in_county = pc.or_(county_service, _bernoulli(u["in_county"], county_p))

    truth = pa.table(
        {
            "person_id": pid, "district": district, "ward": ward, "age_band": age_band, "age": age,
            "household_size": household, "income": income, "claims_housing_benefit": hb,
            "claims_council_tax_support": cts, "child_in_social_care": csc, "adult_social_care": asc,
            "free_school_meals": fsm, "known_to_district": in_district, "known_to_county": in_county,
        }
    )  # fmt: skip
    datasets: dict[str, Mapping[str, pa.Table]] = {}
    for node, name in DISTRICTS.items():
        rows = truth.filter(pc.and_(in_district, pc.equal(district, name)))
        known_csc = pc.and_(rows["child_in_social_care"], rows["claims_housing_benefit"])
        rows = _with(
            rows,
            child_in_social_care=known_csc,
            adult_social_care=_false(rows),
            free_school_meals=_false(rows),
        )
        datasets[node] = MappingProxyType({"citizens": _conform(rows, CITIZENS)})
    county = truth.filter(in_county)
    assessed = pc.or_(
        pc.or_(county["child_in_social_care"], county["adult_social_care"]), county["free_school_meals"]
    )
    county = _with(
        county,
        claims_housing_benefit=pc.and_(county["claims_housing_benefit"], assessed),
        claims_council_tax_support=pc.and_(county["claims_council_tax_support"], assessed),
    )
    datasets["county"] = MappingProxyType(
        {"citizens": _conform(county, CITIZENS), "service_contacts": _contacts(rng, county)}
    )
    return Population(people, seed, truth, MappingProxyType(datasets))


def _false(t: pa.Table) -> pa.Array:
    return pa.repeat(pa.scalar(False), t.num_rows)


def _with(t: pa.Table, **columns: pa.Array | pa.ChunkedArray) -> pa.Table:
    for name, col in columns.items():
        t = t.set_column(t.schema.get_field_index(name), name, col)
    return t


def _conform(t: pa.Table, decl: DemoDataset) -> pa.Table:
    return t.select([c.name for c in decl.schema.columns]).cast(decl.arrow_schema)


def _contacts(rng: random.Random, county: pa.Table) -> pa.Table:
    """1-6 service contacts per person in the county's records."""
    n = county.num_rows
    count = pc.add(_pick(_uniform(rng, n), _CONTACTS), 1)
    parts = [pc.indices_nonzero(pc.greater_equal(count, k)) for k in range(1, len(_CONTACTS) + 1)]
    idx = pa.concat_arrays(parts)
    idx = pc.take(idx, pc.sort_indices(idx))
    people = county.take(idx)
    age, csc, asc = people["age"], people["child_in_social_care"], people["adult_social_care"]
    child = pc.less(age, 18)
    group = _where(
        child,
        _where(csc, 1, 0),
        _where(asc, 3, _where(csc, 4, 2)),
    )
    m = people.num_rows
    service_idx = _pick_by_group(_uniform(rng, m), pc.cast(group, pa.int32()), _SERVICE_MIX)
    lo = pc.take(pa.array([d[0] for d in _DURATION], pa.int64()), service_idx)
    width = pc.take(pa.array([float(d[1] - d[0] + 1) for d in _DURATION]), service_idx)
    minutes = pc.add(lo, pc.cast(pc.floor(pc.multiply(_uniform(rng, m), width)), pa.int64()))
    table = pa.table(
        {
            "person_id": people["person_id"],
            "district": people["district"],
            "ward": people["ward"],
            "service": pc.take(pa.array(SERVICES), service_idx),
            "duration_minutes": minutes,
        }
    )
    return _conform(table, SERVICE_CONTACTS)


# Expected smallest share of the population held by one authority (district-b); the search in
# population_for corrects for any shortfall.
_SMALLEST_SHARE = 0.40


def population_for(people_per_authority: int, seed: int) -> Population:
    """The smallest-ish population in which every authority holds >= people_per_authority rows."""
    size = math.ceil(people_per_authority / _SMALLEST_SHARE) + 64
    while True:
        pop = generate_population(size, seed)
        fewest = min(pop.datasets[node]["citizens"].num_rows for node in NODES)
        if fewest >= people_per_authority:
            return pop
        size = math.ceil(size * people_per_authority / max(fewest, 1) * 1.02) + 64
