# make run   — install into .venv if needed, migrate, seed the demo, start everything
# make test  — the whole test suite (real PostgreSQL and Redis when reachable)
# make bench — benchmarks; results in bench-results/
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m affectwatch.launcher --port $(PORT) $(ARGS)

test: install
	$(PY) -m tests.run $(ARGS)

bench: install
	$(PY) -m tests.bench $(ARGS)

clean:
	rm -rf var/ .pytest_cache
