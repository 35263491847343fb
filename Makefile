# Everything runs inside .venv, created on first use from the system python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-sim test lint soak chaos bench clean

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

# raftkit and PySyncObj side by side (installs PySyncObj from PyPI).
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/throughput.py --nodes 3 --sizes 10,1024

lint: $(STAMP)
	$(BIN)/ruff check raftkit tests benchmarks examples

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Long randomized runs: thousands of Hypothesis examples over the simulator.
soak: $(STAMP)
	RAFTKIT_SOAK=1 $(BIN)/python -m pytest -q -m soak -p no:cacheprovider

# Real node processes, concurrent clients, kills, pauses and partitions;
# every history checked for linearizability (RAFTKIT_CHAOS_SECONDS per seed).
chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos -p no:cacheprovider tests/testing/test_process_test.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
