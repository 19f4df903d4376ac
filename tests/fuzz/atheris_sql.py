"""Coverage-guided fuzzing of the query parser and validator with atheris (libFuzzer).

Each input is raw bytes, decoded as UTF-8 with ``surrogateescape`` (bytes that are not UTF-8
become lone surrogates), and checked by :func:`tests.fuzz.sqlfuzz.check`: ``parse`` and
``compile_query`` must return a query satisfying its invariants or raise InvalidQuery; any other
exception is a crash that libFuzzer saves under ``-artifact_prefix``. ``protos`` and ``sqlglot``
are instrumented, so libFuzzer mutates towards new paths through both.

Run it by hand for as long as you like (``make test-slow`` runs it for a bounded time)::

    python -m tests.fuzz.atheris_sql -dict=tests/fuzz/sql.dict -max_len=4096 CORPUS_DIR
    python -m tests.fuzz.atheris_sql crash-<sha1>          # replay one saved input
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["protos", "sqlglot"]):
    from tests.fuzz.sqlfuzz import check


def test_one_input(data: bytes) -> None:
    check(data.decode("utf-8", "surrogateescape"))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
