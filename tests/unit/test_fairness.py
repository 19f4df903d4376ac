"""Per-analyst limits (:mod:`accord.rpc.fairness`) on a controlled clock."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from accord.config import Table
from accord.errors import ConfigError, ResourceLimit
from accord.rpc.fairness import AnalystLimits, FairnessConfig, fairness_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_queries_are_limited_per_analyst() -> None:
    """Property: an analyst's (max_in_flight + 1)-th concurrent query is refused at once with a
    retry hint; another analyst is not affected; a finished query frees its slot."""
    limits = AnalystLimits(FairnessConfig(max_in_flight=2, per_minute=1000, burst=1000), Clock())
    with ExitStack() as running:
        running.enter_context(limits.admit("alice"))
        running.enter_context(limits.admit("alice"))
        with pytest.raises(ResourceLimit) as refused, limits.admit("alice"):
            pass
        assert "max_in_flight = 2" in refused.value.message
        assert refused.value.retry_after_seconds is not None and refused.value.retry_after_seconds > 0
        with limits.admit("bob"):
            pass
    with limits.admit("alice"):
        pass


def test_rate_is_a_token_bucket_with_an_exact_retry_hint() -> None:
    """Property: ``burst`` queries pass at once, the next is refused with the time until a token
    is back (60 / per_minute s after an empty bucket), and after that time it passes."""
    clock = Clock()
    limits = AnalystLimits(FairnessConfig(max_in_flight=100, per_minute=30, burst=3), clock)
    for _ in range(3):
        with limits.admit("alice"):
            pass
    with pytest.raises(ResourceLimit) as refused, limits.admit("alice"):
        pass
    assert refused.value.retry_after_seconds == pytest.approx(2.0)
    assert "retry in 2.0 s" in refused.value.message
    clock.now = 1.9
    with pytest.raises(ResourceLimit), limits.admit("alice"):
        pass
    clock.now = 2.0
    with limits.admit("alice"):
        pass
    with limits.admit("bob"):  # bob's bucket is his own
        pass


def test_a_refusal_spends_no_token() -> None:
    """Property: refused queries (over the concurrency limit) take no token from the bucket."""
    limits = AnalystLimits(FairnessConfig(max_in_flight=1, per_minute=60, burst=2), Clock())
    with limits.admit("alice"):
        for _ in range(10):
            with pytest.raises(ResourceLimit), limits.admit("alice"):
                pass
    with limits.admit("alice"):  # the second token is still there
        pass


def test_threads_never_exceed_the_limit() -> None:
    """Property: under 32 threads, never more than max_in_flight of one analyst's bodies run at once."""
    limits = AnalystLimits(FairnessConfig(max_in_flight=3, per_minute=10**6, burst=10**6))
    running = peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(32)

    def one() -> None:
        nonlocal running, peak
        gate.wait()
        for _ in range(50):
            try:
                with limits.admit("alice"):
                    with lock:
                        running += 1
                        peak = max(peak, running)
                    with lock:
                        running -= 1
            except ResourceLimit:
                pass

    threads = [threading.Thread(target=one) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak <= 3 and running == 0


def test_config_table(tmp_path: Path) -> None:
    """Property: [fairness] keys default sensibly, are range-checked, and unknown keys are refused."""
    path = tmp_path / "x.toml"
    assert fairness_config(Table(path, "fairness", {})) == FairnessConfig()
    assert fairness_config(Table(path, "fairness", {"burst": 5})).burst == 5
    with pytest.raises(ConfigError, match="max_in_flight"):
        fairness_config(Table(path, "fairness", {"max_in_flight": 0}))
    with pytest.raises(ConfigError, match="unknown key"):
        fairness_config(Table(path, "fairness", {"per_second": 1}))
