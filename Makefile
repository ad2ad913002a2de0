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

.PHONY: setup test demo model bench clean

setup: $(STAMP)

$(STAMP): scripts/setup_venv.sh requirements.txt requirements-ros.txt requirements-test.txt setup.py package.xml
	bash scripts/setup_venv.sh
	touch $@

test: $(STAMP)
	$(PYTHON) -m pytest -ra test

demo: $(STAMP)
	$(VENV)/bin/liquid-driver-demo --layout $(HELD_OUT_LAYOUT) --laps $(DEMO_LAPS) --out out/demo

# Re-create the shipped model: record expert demonstrations over ROS 2, then train.
model: $(STAMP)
	$(VENV)/bin/liquid-driver-collect --out data/demos --overwrite
	$(VENV)/bin/liquid-driver-train data/demos --out runs/lane_keeper --overwrite --export models/lane_keeper.safetensors

bench: $(STAMP)
	$(PYTHON) bench/bench_model.py
	$(PYTHON) bench/bench_sim.py

clean:
	rm -rf out runs build install log .pytest_cache
