# The whole set-up on a fresh machine is `make test` or `make demo`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-slow demo bench venv clean

venv: $(STAMP)

# Re-install only when the package metadata changes; pip's cache makes a repeat install quick.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	$(BIN)/radsearch demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.loss_step
	$(BIN)/python -m benchmarks.eval_forensic

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
