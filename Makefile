# fastsam_ros developer entry points: a venv with ROS 2 Jazzy from PyPI wheels, torch and ultralytics,
# and the package (messages + Python) built with plain CMake and installed into that venv.
# See ../shared/ros2-on-pypi.md. On a robot with apt ROS 2, use `colcon build` instead.
#
#   make setup   venv + build (stamp files: a second run takes about a second)
#   make test    pytest, one random ROS_DOMAIN_ID per run
#   make demo    the node on the sample images played as a camera, prompts from config/demo_prompts.json
#   make eval    prompt-selection quality on the COCO subset
#   make eval-track  followed prompts on moving-camera sequences from the COCO subset, through the node
#   make demo-video  a clip made from a sample image played through the node by video_source, one click
#   make bench   side-by-side benchmark: table printed, JSON to OUT (default out/bench.json)
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
	$(wildcard msg/*.msg) $(wildcard srv/*.srv) $(wildcard fastsam_ros/*.py) \
	$(wildcard scripts/*.in) $(wildcard launch/*) $(wildcard config/*)

.PHONY: setup deps build test demo demo-video eval eval-track bench lint clean distclean

setup: $(VENV)/.stamp-build

deps: $(VENV)/.stamp-deps

build: $(VENV)/.stamp-build

# (The grep drops pip's warning, once per package, that a local file:// index of this machine's pip config
# has no folder for it; pip's own exit status still counts, through pipefail.)
# Never `pip install .` into this venv: pip would take the CMake-installed fastsam_ros (rosidl writes an
# egg-info) for its own and uninstall it, messages included. setup.py is for a separate, ROS-free venv.
$(VENV)/.stamp-deps: $(REQUIREMENTS)
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

test: setup
	ROS_DOMAIN_ID=$$(( RANDOM % 100 + 1 )); export ROS_DOMAIN_ID; \
	echo "ROS_DOMAIN_ID=$$ROS_DOMAIN_ID"; \
	$(PY) -m pytest test -q

demo: setup
	$(PY) -m harness.demo --model $(MODEL) --images $(IMAGES) --prompts config/demo_prompts.json \
		--out $(or $(OUT),out/demo)

demo-video: setup
	$(PY) -m harness.demo_video --model $(MODEL) --images $(IMAGES) --out $(or $(OUT),out/demo-video)

eval: setup
	$(PY) -m fastsam_ros.evaluate --data $(DATA) --model $(MODEL) --out $(or $(OUT),out/eval.json)

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
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
