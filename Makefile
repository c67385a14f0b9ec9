# make setup | demo | test | lint | docs. The venv lives in .venv and is reused while requirements and pyproject are unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup data demo test test-slow lint docs bench-deps clean

setup: $(STAMP) data

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps torchattacks==3.5.1 imagecorruptions-imaug==1.1.5
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

data:
	@scripts/ensure-fmnist

demo: setup
	$(BIN)/sharpvision demo $(ARGS)

# pytest exits 5 when it collected nothing: for this project that is a failure, said plainly. The fast suite runs in
# TEST_WORKERS one-thread processes (pytest-xdist), a test file per worker so module fixtures are built once.
TEST_WORKERS ?= auto
test: setup
	@$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# the tests that start worker processes (torchrun jobs, kill-and-resume faults): minutes, so apart; CI runs both
test-slow: setup
	@$(BIN)/pytest -m slow $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# the peers the benchmarks compare against (PyHessian, curvlinops); never needed by the package or its tests
bench-deps: setup
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-bench.txt

lint: setup
	$(BIN)/ruff check src tests benchmarks studies scripts

# rewrite the figures blocks in README.md and docs/*.md from benchmarks/results/*.json (standard library only)
docs:
	$(PYTHON) scripts/docs_figures.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
