# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs the pinned
# dependencies from setup.py when missing (or when setup.py changed), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-all venv parity clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3" "setuptools==84.2.1" "wheel==0.46.1"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $$($(PY) -c 'import ast; t = ast.parse(open("setup.py").read()); print(*[ast.literal_eval(n.value) for n in t.body if isinstance(n, ast.Assign) and n.targets[0].id == "NO_DEPS_REQUIRES"][0])')
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sora-jax demo --out $(DEMO_OUT)

# Parity tests and side-by-side benchmarks need CPU PyTorch, diffusers and transformers (heavy, so
# not part of `make test`); tests that need them skip with a message naming this target.
parity: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,parity]"

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
