# The two set-up commands: `make demo` (a demo push on an embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-faults lint typecheck clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/otn-push demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services otn_push
	$(BIN)/pytest -q -m "not faults"

# issue 3's faults against the four services as processes (kill -9, SIGTERM, outages, duplicates)
test-faults: $(STAMP)
	$(BIN)/pytest -q -m faults tests/faults

# the benchmark, not part of `make test`: `make bench SIZES=1000000,10000000 BENCH_ARGS="--push-extracts 0"`
SIZES ?= 1000000
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --sizes $(SIZES) $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
