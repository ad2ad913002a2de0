# Every target installs what it needs into .venv first (see scripts/setup_venv.sh).
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

# Keep DDS traffic on this machine and render MuJoCo without a display.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export MUJOCO_GL ?= egl
export VENV

HELD_OUT_LAYOUT ?= curvy
DEMO_LAPS ?= 2

JAZZY_VENV := .venv-jazzy
JAZZY_STAMP := $(JAZZY_VENV)/.setup-done

.PHONY: setup lint test test-jazzy demo model eval compare compare-quick bench clean

setup: $(STAMP)

$(STAMP): scripts/setup_venv.sh requirements.txt requirements-ros.txt requirements-test.txt setup.py package.xml
	bash scripts/setup_venv.sh
	touch $@

# The package's code must stay valid for Python 3.10 (Humble) up to 3.12 (Jazzy).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin --target=3.10- --no-tips --violations --eval-annotations liquid_driver

test: lint
	$(PYTHON) -m pytest -ra test

# The tests that talk ROS 2 (marked `ros` in test/conftest.py), against the Jazzy wheels.
$(JAZZY_STAMP): scripts/setup_venv.sh requirements.txt requirements-ros-jazzy.txt requirements-test.txt setup.py package.xml
	VENV=$(JAZZY_VENV) ROS_REQUIREMENTS=requirements-ros-jazzy.txt bash scripts/setup_venv.sh
	touch $@

test-jazzy: $(JAZZY_STAMP)
	$(JAZZY_VENV)/bin/python -m pytest -ra -m ros test

demo: $(STAMP)
	$(VENV)/bin/liquid-driver-demo --layout $(HELD_OUT_LAYOUT) --laps $(DEMO_LAPS) --out out/demo

# Re-create the shipped model: record expert demonstrations over ROS 2, then train.
model: $(STAMP)
	$(VENV)/bin/liquid-driver-collect --out data/demos --overwrite
	$(VENV)/bin/liquid-driver-train data/demos --out runs/lane_keeper --overwrite --export models/lane_keeper.safetensors

# Closed-loop evaluation of the shipped model on held-out layouts, seeds and noise.
eval: $(STAMP)
	$(VENV)/bin/liquid-driver-eval --model models/lane_keeper.safetensors --out out/eval

# NCP against its baselines: trains 6 controllers x 3 seeds and writes docs/liquid-vs-baselines.md
# (about an hour on 2 cores). It records the demonstrations first when data/demos is empty.
compare: $(STAMP)
	$(VENV)/bin/liquid-driver-compare

# The same pipeline with 1 seed, 1 epoch and short drives, into out/compare-quick (a few minutes).
compare-quick: $(STAMP)
	$(VENV)/bin/liquid-driver-compare --quick

bench: $(STAMP)
	$(PYTHON) bench/bench_model.py
	$(PYTHON) bench/bench_sim.py
	$(PYTHON) bench/bench_train.py
	$(PYTHON) bench/bench_node_latency.py

clean:
	rm -rf out runs build install log .pytest_cache $(JAZZY_VENV)
