# Two entry points for a newcomer: `make demo` and `make test` (each sets everything up first).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test demo report bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# The whole workflow offline on the CPU: digits prepared, both network families trained,
# compressed, evaluated, parsed and plotted into results/demo/ and figures/demo/.
CORES ?= 2
# A lock left by a killed Snakemake is removed first, unless a Snakemake still runs here.
demo: setup
	$(BIN)/eps-resnet check-config config/demo.yaml
	$(BIN)/python -m eps_resnet.workflow.unlock --configfile config/demo.yaml
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml \
		--rerun-incomplete

# The demo's results as one self-contained HTML page (figures, captions, settings, summary).
report: demo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --configfile config/demo.yaml --report report.html

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV)
