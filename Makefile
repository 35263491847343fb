# Everything runs inside .venv, created on first use from the system python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m raftkit.demo

lint: $(STAMP)
	$(BIN)/ruff check raftkit tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Long randomized runs: thousands of Hypothesis examples over the simulator.
soak: $(STAMP)
	RAFTKIT_SOAK=1 $(BIN)/python -m pytest -q -m soak -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
