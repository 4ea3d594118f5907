# The two commands of the README: `make demo` (set up, then generate with the bundled model) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-train test test-unit test-quick

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

# the quick tier for every edit: leaves out the tests marked slow (tests/e2e and unit tests over ~5 s)
test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow" tests
