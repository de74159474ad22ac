# The two commands a fresh machine needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint system-deps venv clean bench

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml plugins/amazon_lwa/pyproject.toml \
		plugins/amazon_ads/pyproject.toml plugins/amazon_sp/pyproject.toml \
		plugins/shopify/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e plugins/amazon_lwa -e plugins/amazon_ads \
		-e plugins/amazon_sp -e plugins/shopify
	touch $@

demo: venv
	$(BIN)/channel-agent demo

system-deps:
	scripts/system-deps.sh

lint: venv
	$(BIN)/ruff check .

# One pytest worker per core (at most 4); --dist loadfile keeps each test module on one worker,
# so a module's fixture (a fleet of agents, Prometheus) starts once and its tests run in order.
# compileall: the tests start many channel-agent processes, and with PYTHONDONTWRITEBYTECODE
# set each one would compile the editable sources anew.
test: venv system-deps lint
	$(BIN)/python -m compileall -q agent plugins/*/channel_agent_*
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

# Not part of `make test`: minutes long, and its numbers depend on the machine.
# make bench BENCH_ARGS="--accounts 1000 --latency 0.02"   (--help lists the knobs)
# make bench INVENTORY_BENCH_ARGS="--rows 10000"           (benchmarks/inventory.py)
bench: venv
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/inventory.py $(INVENTORY_BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
