#!/usr/bin/env bash
# Creates the virtual environment and installs everything the tests, demo and benchmarks need:
# PyTorch (the CPU build where there is no NVIDIA GPU, so no multi-GB CUDA download), Triton,
# the test tools, then this package built in place (the C++/CUDA extension included).
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip setuptools wheel
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    $PIP install -q "torch>=2.6"
  else
    $PIP install -q "torch==2.13.0"  # the CPU wheel on this machine's disk
  fi
fi
$PIP install -q "triton>=3.2" pytest pytest-benchmark pytest-timeout numpy ninja pybind11 transformers \
  tokenizers safetensors tqdm matplotlib
# --no-build-isolation: the build must see the torch installed above (never a second one).
MAX_JOBS=${MAX_JOBS:-2} $PIP install -q --no-build-isolation -e .
"$VENV/bin/python" -c "import llmkernels; r = llmkernels.info(print_report=False); print(\"llmkernels extension:\", r[\"extension\"])"
