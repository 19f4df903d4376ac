# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when it is
# missing and (re)install the project with its dev extras whenever pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.accord-installed

.PHONY: demo test test-slow lint typecheck protos bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/accord demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# Benchmarks are programs, not tests: results go to bench/results (summary.json, summary.md, PNGs).
bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick --out bench/results/quick

protos: $(STAMP)
	$(BIN)/python -m accord.protos.codegen

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
