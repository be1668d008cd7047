# The front door: `make demo` and `make test` set up everything they need themselves.
PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
OLDEST_AIRFLOW ?= 3.1.0
OLDEST_PYTHON ?= $(shell for p in $$HOME/.pyenv/versions/3.10.*/bin/python python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: demo demo-ui docs test test-unit test-oldest test-matrix test-matrix-full lint format bench faults faults-big faults-celery faults-pool chromium clean

# The venv: said step by step (pip runs quiet: some 170 packages would scroll by otherwise).
$(STAMP): pyproject.toml
	@start=$$(date +%s); \
	echo "==> [1/3] Creating $(VENV) with $$($(PYTHON) --version) (a few seconds)"; \
	$(PYTHON) -m venv $(VENV) && \
	echo "==> [2/3] Upgrading pip in $(VENV) (about 5 s)" && \
	$(BIN)/pip install --quiet --upgrade pip && \
	echo "==> [3/3] Installing apache-airflow==$(AIRFLOW_VERSION), this provider (editable) and its test and" && \
	echo "          lint tools and Sphinx: about 170 packages, 1 to 3 minutes with a warm pip cache, longer without" && \
	$(BIN)/pip install --quiet -e ".[dev]" "apache-airflow==$(AIRFLOW_VERSION)" && \
	touch $(STAMP) && \
	echo "==> $(VENV) ready in $$(( $$(date +%s) - start )) s"

venv: $(STAMP)

## demo: start the sandbox, run an example DAG through Airflow, print the rental from XCom
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## demo-ui: the sandbox and `airflow standalone` wired together (http://127.0.0.1:8080; AIRFLOW_PORT and
## SANDBOX_PORT choose others); prints ready commands to trigger an example DAG
demo-ui: $(STAMP)
	$(BIN)/python scripts/demo_ui.py

## docs: the documentation (Sphinx from the docs extra, docs/*.rst) into docs/_build/html; any warning fails
## the build (`-n`: every reference must resolve)
docs: $(STAMP)
	$(BIN)/sphinx-build -b html -n -W --keep-going -q docs docs/_build/html
	@echo "Documentation: docs/_build/html/index.html"

## test: lint, type-check, the docs and every test (unit, sandbox, real Airflow, browser); the CI-size
## fault run is `make faults` (SQLite, LocalExecutor) and `make faults-celery` (PostgreSQL, Celery)
test: $(STAMP) chromium docs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q --timeout=900 -n 2 --dist loadfile -m "not fault_run"

## test-unit: the tests that need no Airflow process, no server and no browser
test-unit: $(STAMP)
	$(BIN)/pytest -q -m "not airflow and not browser" -n 2 --dist loadfile

## test-oldest: the unit tests on the oldest supported Airflow and Python
## (Airflow 3.1.0 imports structlog.dev.Styles, which structlog 25.5 removed: hence the pin)
test-oldest:
	test -n "$(OLDEST_PYTHON)" || (echo "Python 3.10 not found (set OLDEST_PYTHON)"; exit 1)
	test -x .venv-oldest/bin/python || $(OLDEST_PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/pip install --quiet "apache-airflow==$(OLDEST_AIRFLOW)" "structlog<25.5" "requests-mock>=1.11" "pytest>=8" "hypothesis>=6.100" "pytest-timeout>=2.3" "pytest-xdist>=3.5"
	.venv-oldest/bin/pip install --quiet --no-deps -e .
	.venv-oldest/bin/pytest -q -m "not airflow and not browser" -p no:cacheprovider -n 2 --dist loadfile

## test-matrix: CI's compatibility matrix. Each supported Airflow minor's first release (3.1.0, 3.2.0,
## 3.3.0) on Python 3.10 and 3.13, installed as its users did (the dependencies of its release day,
## then the built wheel); in each, the example DAGs that wait in the triggerer, the one that
## watches an asset and the mapped one run for real with the connection in the metadata DB; on
## 3.1.0/3.10 the wait also runs with the connection in an environment variable and in a secrets
## backend.
MATRIX_CI_DAGS := smsonline_verification_code,smsonline_one_time_code,smsonline_inbox,smsonline_rent_many
test-matrix:
	$(PYTHON) scripts/compat_matrix.py --only $(MATRIX_CI_DAGS) --sources-on airflow-3.1.0-py3.10

## test-matrix-full: every example DAG in every cell, the other connection sources once per Airflow
test-matrix-full:
	$(PYTHON) scripts/compat_matrix.py

## faults: the fault-injection proof at CI size (200 rentals, 30% faulted, worker kills)
faults: $(STAMP)
	$(BIN)/python scripts/fault_run.py --tasks 200 --fault-rate 0.3 --kills 3 --seed 7 --parallelism 4

## faults-celery: the fault-injection proof on PostgreSQL, Redis and the CeleryExecutor (two workers
## of two slots, one crashed mid-run and restarted), rentals, renewals and activations, the first 6
## rental answers lost together; every task instance must succeed; installs Debian's postgresql and
## redis-server when missing (root + apt-get)
faults-celery: $(STAMP)
	scripts/ensure_services.sh
	$(BIN)/python scripts/faults_celery.py --tasks 100 --fault-rate 0.3 --kills 3 --activations 20 --seed 7 \
		--burst 6 --retries 5 --require-success

## faults-pool: the same without charging turns, the charging tasks in a pool of one slot per account
faults-pool: $(STAMP)
	scripts/ensure_services.sh
	$(BIN)/python scripts/faults_celery.py --tasks 100 --fault-rate 0.3 --kills 3 --seed 7 --pool 1 --no-lease

## faults-big: the same proof at 1,000 rentals
faults-big: $(STAMP)
	$(BIN)/python scripts/fault_run.py --tasks 1000 --fault-rate 0.3 --kills 10 --seed 11 --parallelism 4

## bench: the benchmarks of docs/benchmarks.rst (~8 min; fetches providers-http for the comparisons into a
## directory outside the venv); exits 1 when a target is missed
bench: $(STAMP)
	scripts/ensure_services.sh
	$(BIN)/python benchmarks/run.py

## chromium: install Debian's chromium for the browser test when possible (root + apt-get)
chromium:
	@scripts/ensure_chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .venv-oldest .matrix .airflow_home test-artifacts docs/_build .pytest_cache .mypy_cache .ruff_cache
