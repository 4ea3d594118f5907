# The two commands of the README: `make demo` (set up, then generate with the bundled model) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-train test test-unit

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

demo-train: setup
	bash scripts/demo_train.sh

test: setup
	$(BIN)/python -m pytest -q tests

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit
