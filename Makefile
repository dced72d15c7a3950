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

# every benchmark; each records its latest output in docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m benchmarks.loss_step
	$(BIN)/python -m benchmarks.eval_forensic
	$(BIN)/python -m benchmarks.nih_adapter
	$(BIN)/python -m benchmarks.data_pipeline
	$(BIN)/python -m benchmarks.synth_cohort
	$(BIN)/python -m benchmarks.train_step
	$(BIN)/python -m benchmarks.eval_diagnostic
	$(BIN)/python -m benchmarks.search
	$(BIN)/python -m benchmarks.service
	$(BIN)/python -m benchmarks.mmdl_step

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
