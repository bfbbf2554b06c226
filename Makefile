# odeval: the two set-up commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
# uv from PATH, else a private copy installed with pip into .tools/ (a fresh machine has none)
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
DEMO := data/raw/demo

.PHONY: demo test test-slow test-tools bench env clean

.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

env: $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --compile-bytecode

## Build the synthetic multi-site study, run every stage, write the report (`odeval run` prints its path last)
demo: env
	$(UV) run odeval synth $(DEMO)
	$(UV) run odeval run $(DEMO)

## The test suite (everything but tests marked slow), in one worker per core (pytest-xdist,
## at most 4: every test uses its own tmp folders and warehouses; PYTEST_WORKERS=0 runs it
## in this process)
PYTEST_WORKERS ?= auto
test: env test-tools
	$(UV) run pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4

## Slow tests too (Monte Carlo coverage, larger studies)
test-slow: env test-tools
	$(UV) run pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 -m "slow or not slow"

## What the tests need besides Python, found or installed (CI's .ci/run takes the same
## steps, through `make test`): headless Chromium and chromedriver at /usr/bin for the
## report-rendering test, a Java runtime for the Spark tests. Installed with apt-get when
## run as root (or with password-less sudo) on Debian/Ubuntu; otherwise stops at once
## with the command to run.
TEST_PACKAGES_CHROMIUM := chromium chromium-driver
TEST_PACKAGES_JAVA := default-jre-headless
test-tools:
	@missing=""; \
	[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || missing="$(TEST_PACKAGES_CHROMIUM)"; \
	command -v java >/dev/null 2>&1 || missing="$$missing $(TEST_PACKAGES_JAVA)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; \
	  else sudo="none"; fi; \
	  if [ "$$sudo" != none ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make test: installing$$missing (apt-get)"; \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	  else \
	    echo "make test needs$$missing: install them (Debian/Ubuntu: sudo apt-get install -y$$missing), then run make test again" >&2; \
	    exit 1; \
	  fi; \
	fi

## Benchmarks: wall time and peak memory per stage (reports/bench/)
bench: env
	$(UV) run odeval bench --size pilot

clean:
	rm -rf data/raw data/*.duckdb data/*.wal data/stamps reports/*
