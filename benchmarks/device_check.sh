#!/usr/bin/env bash
# The one prepared GPU check (H100/H200): build the CUDA extension in place for sm_90a, run the
# tests marked `gpu`, print one table of GB/s against the peers and the measured copy ceiling.
# Meant to finish within 8 minutes. Not yet run on a GPU (written on a CPU-only machine).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export MAX_JOBS=${MAX_JOBS:-16} LLMKERNELS_CUDA_ARCHS=${LLMKERNELS_CUDA_ARCHS:-90a}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== build (sm_${LLMKERNELS_CUDA_ARCHS}) =="
time timeout 300 "$PY" setup.py -q build_ext --inplace 2>&1 | tail -20
"$PY" -c "import llmkernels; llmkernels.info()" 2>&1 | head -12
echo "== gpu tests =="
timeout 240 "$PY" -m pytest tests -m gpu -q -x --timeout=60 -p no:cacheprovider 2>&1 | tail -20
echo "== table =="
timeout 120 "$PY" benchmarks/gpu_table.py
