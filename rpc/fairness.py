"""Per-analyst limits, so that one analyst cannot starve the others.

Two limits per analyst, both from config (``[fairness]`` in the node and coordinator TOML):

- **concurrent queries**: at most ``max_in_flight`` of one analyst's queries run at once;
- **rate**: a token bucket refilled at ``per_minute`` queries a minute, holding at most ``burst``.

A query over either limit is refused at once with :class:`~accord.errors.ResourceLimit`
(``RESOURCE_EXHAUSTED``) carrying a retry hint: when a token will be there, or a short wait for a
slot. Refusals spend nothing. The server-wide limits (``max_in_flight``, ``max_concurrent_rpcs``)
still apply on top; with these, one analyst's flood fills only its own share of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from accord.config import Table
from accord.errors import ConfigError, ResourceLimit

__all__ = ["BUSY_RETRY_SECONDS", "AnalystLimits", "FairnessConfig", "fairness_config"]

BUSY_RETRY_SECONDS = 0.5
"""The retry hint when all the slots (an analyst's, or a server's) are taken: about a query's time."""
_SHORTEST_HINT = 0.1


@dataclass(frozen=True)
class FairnessConfig:
    """One analyst's share: ``max_in_flight`` queries at once, ``per_minute`` a minute on average
    with bursts of up to ``burst``."""

    max_in_flight: int = 4
    per_minute: int = 120
    burst: int = 20

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.per_minute < 1 or self.burst < 1:
            raise ConfigError("[fairness] limits must all be at least 1")


def fairness_config(t: Table) -> FairnessConfig:
    """The ``[fairness]`` table of a node or coordinator config (every key optional)."""
    t.check_keys({"max_in_flight", "per_minute", "burst"})
    default = FairnessConfig()
    return FairnessConfig(
        max_in_flight=t.integer("max_in_flight", default.max_in_flight, 1, 65536, "4 is a good start"),
        per_minute=t.integer("per_minute", default.per_minute, 1, 1_000_000, "120 is a good start"),
        burst=t.integer("burst", default.burst, 1, 1_000_000, "20 is a good start"),
    )


@dataclass
class _Share:
    tokens: float
    refilled: float
    running: int = 0


class AnalystLimits:
    """The limits of :class:`FairnessConfig`, kept per analyst name. Thread-safe."""

    def __init__(self, config: FairnessConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._shares: dict[str, _Share] = {}

    @contextmanager
    def admit(self, analyst: str) -> Iterator[None]:
        """Run the body as one of ``analyst``'s queries, or raise :class:`ResourceLimit` at once."""
        self._take(analyst)
        try:
            yield
        finally:
            with self._lock:
                self._shares[analyst].running -= 1

    def count(self, analyst: str) -> None:
        """Count one quick call of ``analyst`` (a preview, a budget) against its rate, holding no
        slot past it; :class:`ResourceLimit` if over its share."""
        with self.admit(analyst):
            return

    def _take(self, analyst: str) -> None:
        cfg = self.config
        rate = cfg.per_minute / 60.0
        with self._lock:
            now = self._clock()
            share = self._shares.get(analyst)
            if share is None:
                share = self._shares[analyst] = _Share(tokens=float(cfg.burst), refilled=now)
            share.tokens = min(float(cfg.burst), share.tokens + (now - share.refilled) * rate)
            share.refilled = now
            if share.running >= cfg.max_in_flight:
                raise ResourceLimit(
                    f"analyst {analyst} already has {share.running} queries running here, the most one "
                    f"analyst may ([fairness] max_in_flight = {cfg.max_in_flight}); wait for one to finish "
                    "and retry",
                    retry_after_seconds=BUSY_RETRY_SECONDS,
                )
            if share.tokens < 1.0:
                wait = max(_SHORTEST_HINT, (1.0 - share.tokens) / rate)
                raise ResourceLimit(
                    f"analyst {analyst} has sent more than {cfg.per_minute} queries a minute (bursts up to "
                    f"{cfg.burst}), the most one analyst may here; retry in {wait:.1f} s",
                    retry_after_seconds=wait,
                )
            share.tokens -= 1.0
            share.running += 1
