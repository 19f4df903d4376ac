"""The long fuzzing run of the query parser and validator (``make test-slow``).

The same oracle as the fast tests (:func:`tests.fuzz.sqlfuzz.check`: only a Query satisfying its
invariants or InvalidQuery may come out of ``parse`` and ``compile_query``), driven for minutes
instead of seconds: every hypothesis generator for a fixed time, then a coverage-guided atheris
(libFuzzer) run over raw bytes seeded with valid queries. ``ACCORD_FUZZ_SECONDS`` scales the
time given to each part (default 15 s per hypothesis property, 6x that for atheris).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import InvalidQuery
from accord.query.sql import MAX_SQL_LENGTH, MAX_TOKENS, compile_query, parse
from tests.fuzz.sqlfuzz import (
    CATALOG,
    SEEDS,
    TOKEN_POOL,
    byte_mutated,
    check,
    compile_outcome,
    injected,
    rewritten,
    token_mutated,
    valid_ish,
    valid_queries,
)
from tests.unit.test_sql_fuzz import VOCABULARY, mutated

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("ACCORD_FUZZ_SECONDS", "15"))
ROOT = Path(__file__).resolve().parents[2]
CHUNK = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def run_for(seconds: float, prop: Callable[[], None]) -> int:
    """Run the hypothesis property ``prop`` (500 fresh random examples per call) until ``seconds``
    have passed; the number of examples run."""
    deadline, examples = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        prop()
        examples += 500
    return examples


@CHUNK
@given(st.text(max_size=400))
def _random_text(text: str) -> None:
    check(text)


@CHUNK
@given(st.lists(st.sampled_from(VOCABULARY + TOKEN_POOL), max_size=60).map(" ".join))
def _token_soup(text: str) -> None:
    check(text)


@CHUNK
@given(mutated())
def _char_mutations(text: str) -> None:
    check(text)


@CHUNK
@given(byte_mutated())
def _byte_mutations(text: str) -> None:
    check(text)


@CHUNK
@given(token_mutated())
def _token_mutations(text: str) -> None:
    check(text)


@CHUNK
@given(valid_ish())
def _valid_ish(text: str) -> None:
    check(text)


@CHUNK
@given(st.data())
def _valid_rewritten_injected(data: st.DataObject) -> None:
    query = data.draw(valid_queries())
    assert compile_query(query.text, CATALOG) == query.expected
    text = data.draw(rewritten(query))
    assert compile_query(text, CATALOG) == query.expected, text
    name, bad = data.draw(injected(query))
    assert isinstance(compile_outcome(bad), InvalidQuery), (name, bad)


PROPERTIES: dict[str, Callable[[], None]] = {
    "random text": _random_text,
    "token soup": _token_soup,
    "character mutations": _char_mutations,
    "byte mutations": _byte_mutations,
    "token mutations": _token_mutations,
    "valid-ish grammar noise": _valid_ish,
    "valid, rewritten and injected": _valid_rewritten_injected,
}


@pytest.mark.timeout(int(SECONDS * 3) + 120)
@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_long_hypothesis_run(name: str) -> None:
    """Property: for minutes of generated input of this kind, parse and compile_query return only
    a Query satisfying its invariants or InvalidQuery (and valid/rewritten queries compile to their
    expected tree, injected constructs are refused)."""
    examples = run_for(SECONDS, PROPERTIES[name])
    print(f"{name}: {examples} examples in {SECONDS:.0f} s")


# ---- coverage-guided (atheris) ---------------------------------------------------------------

ATHERIS_SECONDS = int(SECONDS * 6)


@pytest.mark.timeout(ATHERIS_SECONDS + 300)
def test_atheris_coverage_guided_run(tmp_path: Path) -> None:
    """Property: a coverage-guided libFuzzer run over raw bytes (seeded with valid queries, with a
    dictionary of SQL words and hostile fragments; instrumented protos and sqlglot) finds no input
    for which parse or compile_query raise anything but InvalidQuery or break an invariant."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed-{i}").write_text(seed, encoding="utf-8")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_sql",
        f"-max_total_time={ATHERIS_SECONDS}",
        "-max_len=4096",
        "-len_control=20",
        "-timeout=30",
        "-rss_limit_mb=4096",
        f"-dict={ROOT / 'tests' / 'fuzz' / 'sql.dict'}",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=ATHERIS_SECONDS + 240, check=False
    )
    took = time.monotonic() - started
    crashes = sorted(p.name for p in artifacts.iterdir())
    tail = done.stderr[-4000:]
    assert done.returncode == 0 and not crashes, f"crashes: {crashes}\n{tail}"
    stats = [line for line in done.stderr.splitlines() if line.startswith("Done ")]
    print(f"atheris: {stats[-1] if stats else '?'} ({took:.0f} s with start-up)")


# ---- no super-linear blow-up at the limits -----------------------------------------------------

UNITS = [
    "1", "a", "'x'", "IS", "IN", "NOT", "=", "->'x'", "::INT", ".a", "+ 1", "* 1", "|| 'x'", "COLLATE x",
    "IS NULL", "BETWEEN 1 AND 2", "CASE WHEN", "THEN", "END", "INTERVAL", "DAY", "AT TIME ZONE 'x'", "OVER",
    "FILTER", "LIKE", "ESCAPE", "AS x", ",", ";", "(1)", "[1]", "@", "?", ":x", "$1", "AND", "OR", "EXISTS",
    "SELECT", "FROM", "UNION SELECT 1", "JOIN t ON TRUE", "ORDER BY 1", "LIMIT 1",
]  # fmt: skip
CPU_BUDGET_SECONDS = 1.0


def _cpu_seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        with contextlib.suppress(InvalidQuery):
            parse(text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("unit", UNITS)
def test_longest_hostile_chains_cost_bounded_cpu(unit: str) -> None:
    """Property: the longest chain of this fragment that still fits the length and token limits
    (in WHERE, before and after a column) costs at most 1 s of CPU to parse or refuse (best of 3),
    i.e. no super-linear blow-up in the parser, the checks or the message building."""
    head = "SELECT COUNT(*) FROM pums WHERE "
    tokens = len(sqlglot.tokenize(unit, read="duckdb"))
    reps = min((MAX_TOKENS - 12) // tokens, (MAX_SQL_LENGTH - len(head) - 16) // (len(unit) + 1))
    for text in (head + (unit + " ") * reps + "age = 1", head + "age " + (unit + " ") * reps):
        seconds = _cpu_seconds(text)
        assert seconds < CPU_BUDGET_SECONDS, f"{unit!r}: {seconds:.2f} s CPU"
