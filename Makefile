# fastsam_ros developer entry points: a venv with ROS 2 Jazzy from PyPI wheels, torch and ultralytics,
# and the package (messages + Python) built with plain CMake and installed into that venv.
# See ../shared/ros2-on-pypi.md. On a robot with apt ROS 2, use `colcon build` instead.
#
#   make setup   venv + build, plus ros2 launch/CLI from ../shared/ros2-tools when present (stamp files: a
#                second run takes about a second). Needs python3-venv, cmake and a C/C++ compiler (checked first)
#   make test    pytest, one random ROS_DOMAIN_ID per run; then the ROS-free tests under Python 3.10 if found
#   make demo    the node on the sample images played as a camera, prompts from config/demo_prompts.json
#   make eval    prompt-selection quality on the COCO subset
#   make eval-track  followed prompts on moving-camera sequences from the COCO subset, through the node
#   make demo-video  a clip made from a sample image played through the node by video_source, one click
#   make bench   side-by-side benchmark: table printed, JSON to OUT (default out/bench.json)
#   make bench-device  the GPU check (bench/device.sh), ready for a machine with CUDA PyTorch only
#   make lint    ruff

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := setup
.DELETE_ON_ERROR:

VENV ?= .venv
PY = $(VENV)/bin/python
# A stand-in checkpoint here (no FastSAM weights on this machine); on a robot use FastSAM-s.pt.
MODEL ?= $(if $(wildcard ../shared/models/yolov8n-seg.pt),../shared/models/yolov8n-seg.pt,FastSAM-s.pt)
DATA ?= ../shared/data/coco-seg-dev
IMAGES ?= ../shared/data/images
OUT ?=
BUILD_DIR := build
# Upstream ROS 2 launch, launch_testing and the ros2 CLI as wheels (not on PyPI); installed only where present.
ROS2_TOOLS ?= ../shared/ros2-tools
# Python 3.10 as on Ubuntu 22.04 / ROS 2 Humble / Jetson: a second venv runs the ROS-free tests under it.
PYTHON310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10))
VENV310 ?= .venv310
# Test files that import nothing of ROS (core, CLI, evaluation, bench statistics): found, not listed.
ROS_FREE_TESTS = $(shell grep -L -E 'ros_harness|rclpy|_msgs|fastsam_ros\.(ros|msg|srv)|harness\.(demo|client)' test/test_*.py)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

VENV_ABS = $(abspath $(VENV))

# Environment of every recipe.
export AMENT_PREFIX_PATH := $(VENV_ABS)
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/.cache/ultralytics
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export FASTRTPS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds.xml
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export PYTHONPATH := $(CURDIR)
# Set by another venv's ROS bootstrap, it would stop ours from setting LD_LIBRARY_PATH.
unexport _ROS_WHEELS_BOOTSTRAP_COMPLETE

REQUIREMENTS := requirements/ros-jazzy.txt requirements/ml.txt requirements/dev.txt
BUILD_INPUTS := CMakeLists.txt package.xml \
	$(wildcard msg/*.msg) $(wildcard srv/*.srv) $(wildcard fastsam_ros/*.py fastsam_ros/*/*.py) \
	$(wildcard scripts/*.in) $(wildcard launch/*) $(wildcard config/*)

.PHONY: setup check-tools deps build ros2-tools test test-py310 demo demo-video eval eval-track bench bench-device \
	lint clean distclean

setup: $(VENV)/.stamp-build $(if $(wildcard $(ROS2_TOOLS)/install.sh),$(VENV)/.stamp-ros2-tools)

# The system tools setup needs, each named with the Debian/Ubuntu package that brings it.
check-tools:
	@missing=""; \
	command -v python3 > /dev/null || missing="$$missing python3"; \
	python3 -c "import ensurepip, venv" 2> /dev/null || missing="$$missing python3-venv"; \
	command -v cmake > /dev/null || missing="$$missing cmake"; \
	command -v cc > /dev/null || missing="$$missing gcc"; \
	command -v c++ > /dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
		echo "make setup: missing$$missing (python3-venv: venv; cmake: message build; gcc/g++: C/C++ compiler)." >&2; \
		echo "Install with: sudo apt-get install$$missing" >&2; \
		exit 1; \
	fi

deps: $(VENV)/.stamp-deps

build: $(VENV)/.stamp-build

# (The grep drops pip's warning, once per package, that a local file:// index of this machine's pip config
# has no folder for it; pip's own exit status still counts, through pipefail.)
# Never `pip install .` into this venv: pip would take the CMake-installed fastsam_ros (rosidl writes an
# egg-info) for its own and uninstall it, messages included. setup.py is for a separate, ROS-free venv.
$(VENV)/.stamp-deps: $(REQUIREMENTS) | check-tools
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS)) 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $@

$(BUILD_DIR)/.stamp-configure: $(VENV)/.stamp-deps
	CMAKE_PREFIX_PATH=$(VENV_ABS) cmake -S . -B $(BUILD_DIR) \
		-DCMAKE_INSTALL_PREFIX=$(VENV_ABS) \
		-DPython3_EXECUTABLE=$(VENV_ABS)/bin/python \
		-DBUILD_TESTING=OFF
	touch $@

# cmake's own make is not a sub-make of this one (no "Entering directory" noise); cmake --build
# re-runs the configure step itself when CMakeLists.txt or the msg/srv globs change.
$(VENV)/.stamp-build: $(BUILD_DIR)/.stamp-configure $(BUILD_INPUTS)
	env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS CMAKE_PREFIX_PATH=$(VENV_ABS) cmake --build $(BUILD_DIR) -j $(JOBS)
	cmake --install $(BUILD_DIR) > /dev/null
	touch $@

ros2-tools: $(VENV)/.stamp-ros2-tools

$(VENV)/.stamp-ros2-tools: $(VENV)/.stamp-build $(ROS2_TOOLS)/install.sh $(wildcard $(ROS2_TOOLS)/wheels/*.whl)
	$(ROS2_TOOLS)/install.sh $(VENV)
	touch $@

test: setup
	ROS_DOMAIN_ID=$$(( RANDOM % 100 + 1 )); export ROS_DOMAIN_ID; \
	echo "ROS_DOMAIN_ID=$$ROS_DOMAIN_ID"; \
	$(PY) -m pytest test -q
	$(MAKE) --no-print-directory test-py310

# numpy + OpenCV + pytest only: tests that need torch/ultralytics skip there (test/py310_plugin.py).
test-py310:
	@if [ -z "$(PYTHON310)" ]; then echo "test-py310: skipped, no python3.10 found (set PYTHON310=...)"; exit 0; fi; \
	$(MAKE) --no-print-directory $(VENV310)/.stamp-deps && \
	PYTHONPATH=$(CURDIR):$(CURDIR)/test $(VENV310)/bin/python -m pytest -p py310_plugin -q $(ROS_FREE_TESTS)

$(VENV310)/.stamp-deps: requirements/py310.txt
	$(PYTHON310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install --quiet -r requirements/py310.txt 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $@

demo: setup
	$(PY) -m harness.demo --model $(MODEL) --images $(IMAGES) --prompts config/demo_prompts.json \
		--out $(or $(OUT),out/demo)

demo-video: setup
	$(PY) -m harness.demo_video --model $(MODEL) --images $(IMAGES) --out $(or $(OUT),out/demo-video)

eval: setup
	$(PY) -m evaluation.evaluate --data $(DATA) --model $(MODEL) --out $(or $(OUT),out/eval.json)

eval-track: setup
	$(PY) -m harness.eval_track --data $(DATA) --model $(MODEL) --out $(or $(OUT),out/eval-track.json)

bench: setup
	$(PY) -m bench --model $(MODEL) --out $(or $(OUT),out/bench.json)

lint: $(VENV)/.stamp-deps
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(BUILD_DIR) install log out
	rm -f $(VENV)/.stamp-build

distclean: clean
	rm -rf $(VENV) $(VENV310) .cache .pytest_cache .ruff_cache

# GPU check (bench/device.sh: no ROS, no venv needed; the header says how to carry its wheels). ARGS=--quick etc.
bench-device:
	PYTHON=$(if $(wildcard $(PY)),$(PY),python3) bench/device.sh $(ARGS)
