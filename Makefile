# Two commands on a fresh machine:  make run  (set up, then the main job)  and  make test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: setup run test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo]'
	touch $@

# The main job: the HTTP service on the embedded store, created from the demo city on first run.
run: setup
	$(VENV)/bin/gridmap validate boundaries/demo.gpkg
	$(VENV)/bin/gridmap serve

test: setup
	$(PY) -m pytest

# Rebuild the demo data in boundaries/ (seeded: the same files every time).
demo: setup
	$(PY) boundaries/make_demo.py

bench: setup
	$(PY) benchmarks/bench_validate.py

clean:
	rm -rf $(VENV) .pytest_cache
