#!/usr/bin/env bash
# Create .venv with the engine, its test tools and slicer-core (Slicer's MRML libraries for the
# scene tests). The CPU build of torch is pinned; on a GPU machine install torch for your CUDA
# first and drop the pin.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
python -m pip install -q "slicer-core>=5.13"
python -c "import torch, nimosef_engine, slicer; print('torch', torch.__version__, '| nimosef', nimosef_engine.__version__)"
