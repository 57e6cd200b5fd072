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
# The build tools first: --no-build-isolation below builds with what is installed here.
$PIP install -q --upgrade pip "setuptools>=77" wheel ninja pybind11 numpy  # numpy: torch warns without it at build time
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    $PIP install -q "torch>=2.6"
  else
    $PIP install -q "torch==2.13.0"  # the CPU wheel on this machine's disk
  fi
fi
# --no-build-isolation: the build must see the torch installed above (never a second one).
# The `dev` extra (pyproject.toml) is the one list of what the tests, demo and benchmarks need.
MAX_JOBS=${MAX_JOBS:-2} $PIP install -q --no-build-isolation -e ".[dev]"
"$VENV/bin/python" -c "import llmkernels; r = llmkernels.info(print_report=False); print(\"llmkernels extension:\", r[\"extension\"])"
