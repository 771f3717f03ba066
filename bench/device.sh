#!/usr/bin/env bash
# GPU check: our engine FP32/FP16 on CUDA at imgsz 640 and 1024, stand-in and FastSAM-s-shaped network, 5 and 100
# instances, the GPU's name and the CUDA share of each stage (bench/device.py says what and how). JSON to
# $OUT/device.json when OUT is set (or --out FILE). `make bench-device` runs it; so does a bare x86-64 machine with
# CUDA PyTorch and nothing else of this project (no ROS, no venv, no package index): about 2 minutes on one GPU.
#
# Prepare here, once (.whl/ is gitignored and travels with `carry: [".whl"]`, 2 MB in all): ultralytics itself is
# the only package such a machine lacks (its numpy, opencv, torch, torchvision, pyyaml, requests, psutil, pillow,
# matplotlib are there; polars, ultralytics-thop and ultralytics-platform are not imported by this check):
#   mkdir -p .whl && cp ../shared/models/yolov8n-seg.pt .whl/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl ultralytics==8.4.190
# Then, on that machine, from the working tree: bench/device.sh   (options: --device cuda:0 --rounds 30 --quick)
# Here, on the CPU in seconds (the test suite runs this): bench/device.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
    site=${TMPDIR:-/tmp}/fastsam-device-site
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_VERBOSE=False
export YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-${TMPDIR:-/tmp}/fastsam-device-yolo}
exec "$PYTHON" -m bench.device "$@"
