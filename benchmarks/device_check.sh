#!/usr/bin/env bash
# The one prepared GPU check (H100/H200, no network; torch, triton and pytest already installed):
#   1. build the CUDA extension in place for sm_90a;
#   2. run the GPU tests of every op on both GPU backends (triton and cuda: tests marked `gpu`);
#   3. the bf16 tables: `llmkernels bench --device cuda` (attention head_dim 64 and 128, seq 1k-16k,
#      causal and not, fwd and fwd+bwd, TFLOP/s against SDPA's flash, cuDNN and memory-efficient
#      backends; cross-entropy, linear cross-entropy, the distillation losses, RoPE, rms_norm and
#      swiglu in GB/s or TFLOP/s against the copy and GEMM ceilings it measures first).
# Budget: 8 minutes in all (build 4, tests 1.5, table the rest); the table is printed last. Rows
# go to $LLMKERNELS_BENCH_RESULTS (default benchmarks/results/) as cuda-<card>.csv, with the plots.
# Without a GPU it exits non-zero at once with one line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "device_check.sh: no GPU here (nvidia-smi finds no device); run it on a CUDA machine" >&2
    exit 2
fi
START=$SECONDS
left() { echo $(( 480 - (SECONDS - START) )); }
export MAX_JOBS=${MAX_JOBS:-16} LLMKERNELS_CUDA_ARCHS=${LLMKERNELS_CUDA_ARCHS:-90a} TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== build (sm_${LLMKERNELS_CUDA_ARCHS}) =="
timeout 240 "$PY" setup.py -q build_ext --inplace 2>&1 | tail -20
"$PY" -c "import torch, llmkernels; assert torch.cuda.is_available(), 'torch sees no CUDA device'; llmkernels.info()" 2>&1 | head -30 \
    || { echo "device_check.sh: torch cannot use the GPU" >&2; exit 2; }
echo "== gpu tests (every op, triton and cuda) =="
LLMKERNELS_REQUIRE_EXTENSION=1 timeout 90 "$PY" -m pytest tests/ops -m gpu -q -p no:cacheprovider -x --timeout=60 2>&1 | tail -25
echo "== tables ($(left) s left) =="
timeout $(( $(left) > 60 ? $(left) - 10 : 50 )) "$PY" -m llmkernels bench --device cuda ${BENCH_FLAGS:---quick}
