# bsemu: `make demo` installs into .venv and runs the main job; `make test` installs and runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bsemu train --config deploy/configs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check radio protocol bs_agent coordinator deploy benchmarks tests
	$(BIN)/python -m pytest -q tests/test_layout.py

bench: $(STAMP)
	$(BIN)/python benchmarks/baselines.py

clean:
	rm -rf $(VENV) runs
