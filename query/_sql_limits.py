"""Limits decided from public metadata before a query runs (private to :mod:`accord.query.sql`).

Two things must never depend on the data, so they are checked on the query and the dataset's
declaration alone, before any node executes or spends anything:

* **The release fits one message.** A release carries, per public group, its key and a few
  numbers; all of it is known in advance (the groups are the product of public category lists).
  :func:`release_size_bound` bounds its encoded size from above and :data:`MAX_RELEASE_BYTES`
  caps it, leaving room within the RPC layer's 4 MiB message limit for the release's other
  fields (column names, node names, missing nodes). :data:`MAX_GROUPS` is derived from it: the
  most groups of the smallest possible row (one group column, one count, its support).
* **Sums stay in range.** A dataset holds at most ``max_rows`` rows (declared, checked at load)
  and every summed value is clamped to ``[lower, upper]``, so every sum, in every group, has
  magnitude at most ``max(max_rows, max_rows_per_person) * max(|lower|, |upper|)`` (that also
  bounds the sensitivity). For an integer column that must stay within :data:`INT_SUM_LIMIT`
  (OpenDP's 64-bit integer noise, with room for the noise itself); for a float column within
  :data:`FLOAT_SUM_LIMIT`, far enough below the largest float that neither the sum, nor its
  noise at the smallest epsilon a query can name, nor an interval or a combination over nodes
  can overflow to infinity or NaN. Otherwise the SUM or AVG is refused, naming the config to
  change.
"""

from __future__ import annotations

from fractions import Fraction

from accord.query.model import AggregateFunction, Query
from accord.query.schema import ColumnType, DatasetSchema

MAX_RELEASE_BYTES = 3 * 1024 * 1024
"""Upper bound on a release's rows on the wire; the RPC message limit is 4 MiB."""
ESTIMATE_BYTES = 48
"""One released number (value, noise scale, interval: four doubles, and its mechanism) with its
framing: at most 42 bytes encoded."""
KEY_BYTES = 16
"""One group value with its framing, besides a string's own UTF-8 bytes: at most 14 bytes."""
ROW_BYTES = 16
"""One row's own framing and flags: at most 10 bytes."""
MAX_GROUPS = MAX_RELEASE_BYTES // (ROW_BYTES + KEY_BYTES + 2 * ESTIMATE_BYTES)
"""Most groups a GROUP BY may produce (24,576): the rows of one group column with one count and
its support (small-cell suppression) that fit :data:`MAX_RELEASE_BYTES`. Wider rows fit fewer."""

INT_SUM_LIMIT = 2**62
"""Largest magnitude an integer sum may reach (OpenDP's 64-bit integers, with room for noise)."""
FLOAT_SUM_LIMIT = 1e150
"""Largest magnitude a float sum may reach (the noise at epsilon 1e-99 stays below 1e300)."""


def numbers_per_row(query: Query) -> int:
    """Released numbers in each row: one per COUNT and SUM, three per AVG (the mean, its sum and
    its count), and the group's support, counted always (an agreement may ask for it)."""
    return 1 + sum(3 if a.function is AggregateFunction.AVG else 1 for a in query.aggregates)


def group_count(query: Query, schema: DatasetSchema) -> int:
    """The number of released groups: the product of the GROUP BY columns' category counts."""
    groups = 1
    for column in query.group_by:
        spec = schema.column(column)
        groups *= len(spec.categories) if spec is not None and spec.categories is not None else 1
    return groups


def release_size_bound(query: Query, schema: DatasetSchema) -> int:
    """An upper bound, in bytes, on the encoded rows of the release of ``query`` over ``schema``
    (public metadata only)."""
    groups = group_count(query, schema)
    size = groups * (ROW_BYTES + ESTIMATE_BYTES * numbers_per_row(query))
    for column in query.group_by:
        spec = schema.column(column)
        if spec is None or spec.categories is None:
            continue
        # each category of this column appears in groups / len(categories) rows
        keys = sum(KEY_BYTES + (len(v.encode()) if isinstance(v, str) else 0) for v in spec.categories)
        size += keys * (groups // len(spec.categories))
    return size


def sum_range_problems(query: Query, schema: DatasetSchema) -> list[tuple[str, str, str]]:
    """``(field, description, message)`` for each SUM/AVG whose sums could leave the safe range."""
    problems: list[tuple[str, str, str]] = []
    rows = max(schema.max_rows, schema.max_rows_per_person)
    for agg in query.aggregates:
        if agg.function is AggregateFunction.COUNT or agg.column is None:
            continue
        spec = schema.column(agg.column)
        if spec is None or not spec.type.numeric or spec.lower is None or spec.upper is None:
            continue  # refused elsewhere (no bounds, not numeric)
        largest = max(abs(Fraction(spec.lower)), abs(Fraction(spec.upper)))
        integer = spec.type is ColumnType.INTEGER
        limit = Fraction(INT_SUM_LIMIT) if integer else Fraction(FLOAT_SUM_LIMIT)
        if rows * largest <= limit:
            continue
        fn = f"{agg.function.value}({spec.name})"
        shown = "2^62" if integer else "1e150"
        problems.append(
            (
                "select",
                f"{fn} could overflow",
                f"{fn}: up to max_rows = {schema.max_rows} rows of {spec.name} (bounds {spec.lower} to "
                f"{spec.upper}) could sum past {shown}, beyond the range Accord computes and noises "
                f"sums in; the node operator must narrow the bounds of {spec.name} or declare a "
                f"smaller max_rows for dataset {schema.name} in the node config",
            )
        )
    return problems
