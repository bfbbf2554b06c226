# odeval: the two set-up commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
# uv from PATH, else a private copy installed with pip into .tools/ (a fresh machine has none)
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
DEMO := data/raw/demo

.PHONY: demo test test-slow bench env clean

.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

env: $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --compile-bytecode

## Build the synthetic multi-site study, run every stage, write the report (`odeval run` prints its path last)
demo: env
	$(UV) run odeval synth $(DEMO)
	$(UV) run odeval run $(DEMO)

## The test suite (everything but tests marked slow)
test: env
	$(UV) run pytest -q

## Slow tests too (Monte Carlo coverage, larger studies)
test-slow: env
	$(UV) run pytest -q -m "slow or not slow"

## Benchmarks: wall time and peak memory per stage (reports/bench/)
bench: env
	$(UV) run odeval bench --size pilot

clean:
	rm -rf data/raw data/*.duckdb data/*.wal data/stamps reports/*
