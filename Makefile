# Developer shortcuts; the README's two commands are what a newcomer and CI run.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help install test fast lint format golden bench-cpu bench-checker examples

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## a virtual environment with the package (editable) and the test tools
	python3 -m venv $(VENV) && $(VENV)/bin/pip install torch==2.13.0 -e ".[test]"

test:  ## the whole test suite (what CI runs)
	$(PY) -m pytest -q

fast:  ## the fast tier for the edit loop (tests marked slow left out)
	$(PY) -m pytest -q -m "not slow"

lint:  ## ruff and mypy (strict on the package), as CI runs them
	$(VENV)/bin/ruff check combiner_dsl tests bench
	$(VENV)/bin/mypy combiner_dsl

golden:  ## regenerate the golden files of the generated code
	$(PY) -m pytest -q tests/test_generated_code.py -k golden --update-golden

examples:  ## check every bundled spec, with proofs
	$(VENV)/bin/combiner check examples/*.cmb; $(VENV)/bin/combiner check examples/sparse/*.cmb || true

bench-checker:  ## checker and prover timings
	$(PY) bench/bench_checker.py

bench-cpu:  ## the CPU benchmark of the generated torch modules vs SDPA and FlexAttention
	$(PY) bench/bench_cpu.py
