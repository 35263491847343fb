# Everything runs inside .venv, created on first use from the system python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-sim docs test typecheck test-pythons lint soak chaos bench bench-quick bench-plan pysyncobj-suite dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Three real node processes, a workload, the leader killed mid-run (~30 s).
demo: $(STAMP)
	$(BIN)/python -m raftkit.cli.demo

# The same story told by the deterministic simulator, message by message.
demo-sim: $(STAMP)
	$(BIN)/python -m raftkit.cli.sim_demo

# The performance report, raftkit and PySyncObj (from PyPI) in the same run:
# 3/5/7 nodes, 10 B/1 KB/20 KB values, raftkit in memory (and durable at 3
# nodes), an adaptive open-loop search per workload (a coarse scan until two
# misses, then capacity refined with three repetitions, then 1,000/s, capacity/2,
# 2x and 3x), closed-loop 1/8/64 sync=True callers at 3 nodes, three repetitions.
# About 75-105 minutes on a quiet 2-core machine: run it on one
# (`make bench-plan` prints the runs and the estimate).
# Writes benchmarks/results/<timestamp>-full.json, prints the tables and
# writes one PNG per workload beside the JSON (docs/benchmarks.md).
BENCH_AT := $(shell date -u +%Y%m%d-%H%M%S)

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.perf.driver --preset full --out benchmarks/results/$(BENCH_AT)-full.json
	$(BIN)/python -m benchmarks.perf.report benchmarks/results/$(BENCH_AT)-full.json

# A two-minute look: 3 nodes, 10 B and 1 KB, both libraries in memory, one
# repetition, three rates and 8 closed-loop callers.
bench-quick: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.perf.driver --preset quick --out benchmarks/results/$(BENCH_AT)-quick.json
	$(BIN)/python -m benchmarks.perf.report benchmarks/results/$(BENCH_AT)-quick.json

# What `make bench` would run and how long it would take; runs nothing.
bench-plan: $(STAMP)
	$(BIN)/python -m benchmarks.perf.driver --preset full --plan

lint: $(STAMP)
	$(BIN)/ruff check raftkit tests benchmarks examples tools

# The documentation site (mkdocs, Material theme, API pages from the
# docstrings) in site/; --strict: any warning (a broken link, a docstring
# mkdocstrings cannot read) fails the build. `make test` runs the same build
# (tests/test_docs_site.py). NO_MKDOCS_2_WARNING silences Material's
# end-of-life banner, which is not a build warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The library's own annotations: mypy --strict on raftkit/ (a user's checker
# reads them through py.typed; tests/test_typing.py checks what it sees).
typecheck: $(STAMP)
	$(BIN)/mypy --strict raftkit

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

# The suite on Python 3.10-3.13, each in .venv-pythonX.Y (the ones on PATH;
# with pyenv: PYENV_VERSION=3.10.13:3.11.7:3.12.1:3.13.0 make test-pythons).
# About five minutes per version on 2 cores.
test-pythons:
	$(PYTHON) tools/test_pythons.py

# Long randomized runs: thousands of Hypothesis examples over the simulator.
soak: $(STAMP)
	RAFTKIT_SOAK=1 $(BIN)/python -m pytest -q -m soak -p no:cacheprovider

# Real node processes, concurrent clients, kills, pauses and partitions;
# every history checked for linearizability (RAFTKIT_CHAOS_SECONDS per seed).
chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos -p no:cacheprovider tests/testing/test_process_test.py

# PySyncObj's own test suite (its test_syncobj.py, kept in compat/pysyncobj/)
# run against raftkit with only its imports changed (~6 minutes; exits 0 at
# 32 or more of its 42 tests, issue 14's bar). docs/migration.md lists the rest.
pysyncobj-suite: $(STAMP)
	$(BIN)/python compat/pysyncobj/run_suite.py --json compat/pysyncobj/last-run.json

# The sdist and the wheel in dist/, checked by twine (metadata, README rendering).
dist: $(STAMP)
	$(BIN)/pip install --quiet build twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) .venv-python3.* .pytest_cache .hypothesis build dist *.egg-info
