"""One node's contribution to a secure-aggregated query: what it measured, how it noised it, and
its vector (noisy, as the node stores it; or masked, as it leaves the node).

A :class:`Share` is public metadata (columns, public groups, the noise parameters, the
participants) plus one vector of integers: every measurement's group vector, measurement after
measurement, in fixed point (a measurement with ``scale_bits`` f is in units of ``2**-f``). The
node keeps the *noisy* vector (signed integers) as its record of the answer; what it sends is the
same share with the vector *masked* (each entry uniform in ``[0, 2**64)`` on its own, see
:mod:`accord.policies.secagg`) and the key-exchange transcript it was masked under.

Its bytes are canonical JSON (sorted keys, no spaces, ASCII): the node signs them, and
:meth:`Share.decode` refuses any other spelling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from accord.errors import InternalError
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction, Literal
from accord.query.release import ReleaseColumn

__all__ = ["MODULUS", "Measure", "Share", "is_share"]

MODULUS = 1 << 64
"""Masked vectors live in the ring of integers modulo 2**64."""


@dataclass(frozen=True)
class Measure:
    """One measured vector: ``kind`` ``count`` or ``sum`` of ``column`` (None: rows); its fixed-point
    bits, its L2 sensitivity (encoded units) and the scale of each node's discrete Gaussian share
    (OpenDP's ``scale``, encoded units)."""

    kind: str
    column: str | None
    scale_bits: int
    sensitivity: int
    sigma: float

    def __post_init__(self) -> None:
        if self.kind not in ("count", "sum"):
            raise InternalError(f"a share measures counts or sums, not {self.kind!r}")
        if not 0 <= self.scale_bits <= 62 or self.sensitivity < 0:
            raise InternalError("a share's fixed-point bits or sensitivity are out of range")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise InternalError("a share's noise scale must be finite and >= 0")


@dataclass(frozen=True)
class Share:
    """See the module docstring. ``cells`` gives, per aggregate column, the indices of its measures
    (AVG: its sum, then its count); ``support`` the index of the groups' ``COUNT(*)`` that
    small-cell suppression judges (None without a minimum group size). ``rho`` is each
    measurement's zCDP budget as an exact fraction, ``delta`` the federation's, ``honest`` how many
    nodes the shares were calibrated to assume honest."""

    query_id: str
    request: str
    """SHA-256 (hex) of the analyst's request (:meth:`accord.policies.signing.QueryPayload.request_digest`:
    what they asked, whenever it was signed): the analyst's client checks every share answers its own."""
    node: str
    dataset: str
    agreement: str
    epsilon: Epsilon
    delta: str
    rho: str
    honest: int
    participants: tuple[str, ...]
    columns: tuple[ReleaseColumn, ...]
    groups: tuple[tuple[Literal, ...], ...]
    measures: tuple[Measure, ...]
    cells: tuple[tuple[int, ...], ...]
    support: int | None
    min_group_size: int
    suppress_below: int
    vector: tuple[int, ...]
    bounds: tuple[tuple[str, str, str], ...] = ()
    """Each averaged column's public ``(name, lower, upper)`` (numbers as exact text): the
    combined mean is clamped to them."""
    masked: bool = False
    transcript: str = ""

    def __post_init__(self) -> None:
        if len(self.vector) != len(self.measures) * len(self.groups):
            raise InternalError("a share's vector does not hold one value per measure and group")
        lo, hi = (0, MODULUS - 1) if self.masked else (-(1 << 63), (1 << 63) - 1)
        if any(not lo <= v <= hi for v in self.vector):
            raise InternalError("a share's vector leaves the 64-bit range")
        used = [i for c in self.cells for i in c] + ([self.support] if self.support is not None else [])
        if any(not 0 <= i < len(self.measures) for i in used):
            raise InternalError("a share names a measure it does not hold")
        if self.masked != bool(self.transcript):
            raise InternalError("a masked share, and only a masked share, names its key transcript")

    def bounds_of(self, column: str) -> tuple[float, float] | None:
        for name, lower, upper in self.bounds:
            if name == column:
                return float(lower), float(upper)
        return None

    def values(self, measure: int) -> tuple[int, ...]:
        """The vector of measure ``measure`` (one value per group)."""
        n = len(self.groups)
        return self.vector[measure * n : (measure + 1) * n]

    def public(self) -> dict[str, Any]:
        """Everything but the vector, the node, the masking and the share scales' float spelling: what
        every participant's share of one query must agree on."""
        data = self._fields()
        for key in ("vector", "node", "masked", "transcript"):
            data.pop(key)
        return data

    def _fields(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "request": self.request,
            "node": self.node,
            "dataset": self.dataset,
            "agreement": self.agreement,
            "epsilon": str(self.epsilon),
            "delta": self.delta,
            "rho": self.rho,
            "honest": self.honest,
            "participants": list(self.participants),
            "columns": [[c.name, c.function.value if c.function else None, c.column] for c in self.columns],
            "groups": [list(g) for g in self.groups],
            "measures": [
                [m.kind, m.column, m.scale_bits, m.sensitivity, repr(m.sigma)] for m in self.measures
            ],
            "cells": [list(c) for c in self.cells],
            "support": self.support,
            "min_group_size": self.min_group_size,
            "suppress_below": self.suppress_below,
            "vector": list(self.vector),
            "bounds": [list(b) for b in self.bounds],
            "masked": self.masked,
            "transcript": self.transcript,
        }

    def encode(self) -> bytes:
        return json.dumps(self._fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @staticmethod
    def decode(data: bytes) -> Share:
        """The share of ``data``; :class:`~accord.errors.InternalError` for anything else."""
        try:
            raw = json.loads(data)
            share = Share(
                query_id=_str(raw["query_id"]),
                request=_str(raw["request"]),
                node=_str(raw["node"]),
                dataset=_str(raw["dataset"]),
                agreement=_str(raw["agreement"]),
                epsilon=Epsilon.parse(_str(raw["epsilon"])),
                delta=_str(raw["delta"]),
                rho=_str(raw["rho"]),
                honest=_int(raw["honest"]),
                participants=tuple(_str(p) for p in raw["participants"]),
                columns=tuple(
                    ReleaseColumn(_str(n), AggregateFunction(f) if f is not None else None, c)
                    for n, f, c in raw["columns"]
                ),
                groups=tuple(tuple(g) for g in raw["groups"]),
                measures=tuple(
                    Measure(_str(k), c, _int(b), _int(s), float(_str(sig)))
                    for k, c, b, s, sig in raw["measures"]
                ),
                cells=tuple(tuple(_int(i) for i in c) for c in raw["cells"]),
                support=None if raw["support"] is None else _int(raw["support"]),
                min_group_size=_int(raw["min_group_size"]),
                suppress_below=_int(raw["suppress_below"]),
                vector=tuple(_int(v) for v in raw["vector"]),
                bounds=tuple((_str(n), _str(lo), _str(hi)) for n, lo, hi in raw["bounds"]),
                masked=bool(raw["masked"]),
                transcript=_str(raw["transcript"]),
            )
        except InternalError:
            raise
        except Exception as err:  # any shape error of untrusted bytes
            raise InternalError(f"a secure-aggregation share is malformed ({type(err).__name__})") from None
        if set(raw) != set(share._fields()) or share.encode() != data:
            raise InternalError("a secure-aggregation share is not in canonical form")
        return share


def is_share(release: bytes) -> bool:
    """Whether recorded release bytes are a share (canonical JSON, always starting ``{``) rather
    than a plain release (a serialized ``NodeRelease``, whose first byte is a field tag, never
    ``{``: that would be field 15 as a group, which the message does not have)."""
    return release[:1] == b"{"


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
