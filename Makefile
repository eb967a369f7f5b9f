# Two entry points for a newcomer: `make demo` and `make test` (each sets everything up first).
# The newest supported Python found on PATH (3.13, 3.12 or 3.11: TensorFlow 2.21's wheels), or
# PYTHON=/path/to/python3.x to choose.
SUPPORTED := 3.13 3.12 3.11
# (a name on PATH counts only if it runs: pyenv puts shims there for versions it will not run)
PYTHON ?= $(firstword $(foreach v,$(SUPPORTED),$(shell python$(v) -c '' >/dev/null 2>&1 && \
	command -v python$(v))) $(shell python3 -c 'import sys; sys.exit(sys.version_info[:2] not in \
	((3, 11), (3, 12), (3, 13)))' >/dev/null 2>&1 && command -v python3))
VENV ?= .venv
BIN := $(VENV)/bin
# Every package, to the file (hashes), per Python version: requirements/lock-py3.X[-test].txt,
# written from pyproject.toml's pins by `make lock`.
PYVER = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
LOCK = requirements/lock-py$(PYVER).txt

.PHONY: setup test demo report bench clean lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard requirements/*.txt)
	@test -n "$(PYTHON)" || { echo "make: no supported Python found: expected python3.11, python3.12 or python3.13 on PATH (or PYTHON=/path/to/python3.x)"; exit 1; }
	@echo "make: creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version)), packages from $(LOCK)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# the test tools only where the tests run
$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK:.txt=-test.txt)
	touch $@

# Refresh the locks from pyproject.toml's pins (newest files that satisfy them, Linux x86-64).
lock: setup
	$(BIN)/pip install --quiet uv
	for v in $(SUPPORTED); do \
		for extra in "" test; do \
			$(BIN)/uv pip compile pyproject.toml $${extra:+--extra $$extra} --generate-hashes \
				--python-version $$v --python-platform x86_64-manylinux_2_28 \
				--custom-compile-command "make lock" --quiet \
				-o requirements/lock-py$$v$${extra:+-$$extra}.txt || exit 1; \
		done; \
	done

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q --durations=15

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
