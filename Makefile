# The two commands of the quick start: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint typecheck unit validate bench clean

$(BIN)/ivr: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

serve: $(BIN)/ivr
	$(BIN)/ivr serve

validate: $(BIN)/ivr
	$(BIN)/ivr validate

lint: $(BIN)/ivr
	$(BIN)/ruff check ivr tests bench

typecheck: $(BIN)/ivr
	$(BIN)/mypy ivr tests

unit: $(BIN)/ivr
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(BIN)/ivr
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/speech.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/time_to_human.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
