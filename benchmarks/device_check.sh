#!/usr/bin/env bash
# The one prepared GPU check (H100/H200, no network; torch, triton and pytest already installed):
#   1. build the CUDA extension in place for sm_90a;
#   2. run the GPU tests of every op on both GPU backends (triton and cuda: tests marked `gpu`) and
#      the GPT on the GPU against its torch-ops twin,
#      in parallel workers where pytest-xdist is there (Triton compiles each kernel on the host);
#   3. the bf16 tables: `llmkernels bench --device cuda` (attention head_dim 64 and 128, seq 1k-16k,
#      causal and not, fwd and fwd+bwd, TFLOP/s against SDPA's flash, cuDNN and memory-efficient
#      backends; cross-entropy, linear cross-entropy, the distillation losses, RoPE, rms_norm and
#      swiglu in GB/s or TFLOP/s against the copy and GEMM ceilings it measures first);
#   4. the GPT's training step (small preset, bf16, 40 steps) with --ops torch and llmkernels.
# Budget: $DEVICE_CHECK_SECONDS (default 570) in all; the tables get what build and tests leave,
# less DEVICE_CHECK_TRAIN_RESERVE (150 s) for the training step.
# DEVICE_CHECK_PROFILE=1 adds benchmarks/device_profile.py after them (per-kernel profiles and the
# launch/layout alternatives of the ops the first lease found slow).
# Logs (build.log, info.log, tests.log, bench.log, train-*.log) and the results CSV go to $OUT when
# it is set (the device tool's folder that comes back), else /tmp/llmkernels-device-check; each
# step's summary is printed as it ends. Without a GPU it exits non-zero at once with one line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "device_check.sh: no GPU here (nvidia-smi finds no device); run it on a CUDA machine" >&2
    exit 2
fi
START=$SECONDS
BUDGET=${DEVICE_CHECK_SECONDS:-570}
left() { echo $(( BUDGET - (SECONDS - START) )); }
LOG=${OUT:-/tmp/llmkernels-device-check}
mkdir -p "$LOG"
export MAX_JOBS=${MAX_JOBS:-16} LLMKERNELS_CUDA_ARCHS=${LLMKERNELS_CUDA_ARCHS:-90a} TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader

# Always built: on a warm machine (build/ kept from the last call) ninja recompiles only what changed,
# so a rerun never tests a stale extension.
echo "== build (sm_${LLMKERNELS_CUDA_ARCHS}, $(left) s left) =="
timeout 300 "$PY" setup.py build_ext --inplace > "$LOG/build.log" 2>&1
echo "build exit $?: $(grep -c 'warning' "$LOG/build.log") warning lines, $(grep -c 'error' "$LOG/build.log") error lines"
grep -m 5 -E 'error' "$LOG/build.log"
"$PY" -c "import torch, llmkernels; assert torch.cuda.is_available(), 'torch sees no CUDA device'; llmkernels.info()" > "$LOG/info.log" 2>&1 \
    || { tail -20 "$LOG/info.log"; echo "device_check.sh: torch cannot use the GPU" >&2; exit 2; }
head -30 "$LOG/info.log"

echo "== gpu tests (every op, triton and cuda; $(left) s left) =="
PYTEST_ARGS=()
"$PY" -c "import xdist" 2>/dev/null && PYTEST_ARGS=(-n "${DEVICE_CHECK_WORKERS:-12}")
[ -n "${DEVICE_CHECK_SELECT:-}" ] && PYTEST_ARGS+=(-k "$DEVICE_CHECK_SELECT")   # e.g. "not triton": the CUDA backend only
TEST_SECONDS=${DEVICE_CHECK_TEST_SECONDS:-200}
LLMKERNELS_REQUIRE_EXTENSION=1 timeout "$TEST_SECONDS" "$PY" -m pytest ${DEVICE_CHECK_TESTS:-tests/ops tests/training/test_model.py} -m gpu -q \
    -p no:cacheprovider "${PYTEST_ARGS[@]}" --timeout=150 --tb=short -rfE > "$LOG/tests.log" 2>&1
echo "tests exit $?"
grep -E '^(FAILED|ERROR) ' "$LOG/tests.log" | sed -E 's/\[[^]]*\]//' | sort | uniq -c | sort -rn | head -40
tail -3 "$LOG/tests.log"

echo "== tables ($(left) s left) =="
RESULTS=/tmp/llmkernels-device-results
rm -rf "$RESULTS"
# What the training step (and the profile) after the tables need is held back from them.
RESERVE=$(( ${DEVICE_CHECK_TRAIN_RESERVE:-150} + (${DEVICE_CHECK_PROFILE:-0} == 1 ? ${DEVICE_CHECK_PROFILE_SECONDS:-120} : 0) ))
LLMKERNELS_BENCH_RESULTS=$RESULTS timeout $(( $(left) - RESERVE > 60 ? $(left) - RESERVE : 60 )) \
    "$PY" -m llmkernels bench --device cuda ${BENCH_FLAGS:---quick} > "$LOG/bench.log" 2>&1
echo "bench exit $?"
find "$RESULTS" -name '*.csv' -exec cp {} "$LOG/" \; 2>/dev/null
tail -c 9000 "$LOG/bench.log"
echo "== training: GPT small preset, bf16, --ops torch against llmkernels ($(left) s left) =="
for ops in torch llmkernels; do
    rm -rf "/tmp/llmkernels-device-train-$ops"
    timeout "${DEVICE_CHECK_TRAIN_SECONDS:-70}" "$PY" -m llmkernels train --preset small --device cuda --bf16 --ops "$ops" \
        --steps 40 --log-every 1 --sample-tokens 0 --out "/tmp/llmkernels-device-train-$ops" > "$LOG/train-$ops.log" 2>&1
    echo "$ops (exit $?): $(grep -E '^(tokens/s|val perplexity)' "$LOG/train-$ops.log" | tr -s ' ' | paste -sd ';')"
done

if [ "${DEVICE_CHECK_PROFILE:-0}" = 1 ]; then   # benchmarks/device_profile.py, after the tables
    timeout "${DEVICE_CHECK_PROFILE_SECONDS:-120}" "$PY" benchmarks/device_profile.py > "$LOG/profile.log" 2>&1
    echo "profile exit $?"; grep -E "^(---|BLOCK|torch\.)" "$LOG/profile.log" | tail -60
fi
