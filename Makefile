# Two entry points for a newcomer: `make demo` and `make test` (each sets everything up first).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# A short ε-ResNet training run on synthetic data (CPU, about a minute).
demo: setup
	$(BIN)/eps-resnet train --dataset synthetic --depth 20 --variant epsilon --epsilon 2.5 \
		--epochs 3 --steps-per-epoch 20 --batch 64 --out results/demo/synthetic-epsilon

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV)
