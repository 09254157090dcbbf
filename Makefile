# Developer shortcuts; the README's two commands are what a newcomer and CI run.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help install test lint format golden bench-cpu bench-checker examples

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## a virtual environment with the package (editable) and the test tools
	python3 -m venv $(VENV) && $(VENV)/bin/pip install torch==2.13.0 -e ".[test]"

test:  ## the whole test suite
	$(PY) -m pytest -q

lint:  ## ruff
	$(VENV)/bin/ruff check combiner_dsl tests bench

golden:  ## regenerate the golden files of the generated code
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_torch_target.py tests/test_triton_target.py -k golden

examples:  ## check every bundled spec, with proofs
	$(VENV)/bin/combiner check examples/*.cmb; $(VENV)/bin/combiner check examples/sparse/*.cmb || true

bench-checker:  ## checker and prover timings
	$(PY) bench/bench_checker.py

bench-cpu:  ## the CPU benchmark of the generated torch modules vs SDPA and FlexAttention
	$(PY) bench/bench_cpu.py
