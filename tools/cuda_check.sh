#!/usr/bin/env bash
# GPU readiness on a machine without a GPU (and usually without a CUDA torch): `make cuda-check`.
#   1. `nvcc -c -Xptxas -v` every csrc/**/*.cu for sm_80 and sm_90a (these include no torch
#      headers); ptxas's report (registers, spills, shared memory) goes to the resource table;
#   2. `g++ -fsyntax-only -DLLMK_WITH_CUDA` every csrc/**/*_cuda.cpp (the torch glue) against the
#      installed torch's headers, with csrc/common/cuda_stub first on the include path to stand in
#      for the generated c10/cuda/impl/cuda_cmake_macros.h that a CPU wheel lacks;
#   2b. tools/cuda_smem_sizes.cu built and run on the host: the attention kernels' dynamic shared
#      memory, which ptxas cannot see, added to their rows;
#   3. tools/triton_check.py: every Triton kernel configuration compiled for sm_80 and sm_90,
#      resources checked, benchmarks/results/gpu_resources.md written, its summary printed last.
# Nothing built here runs; a kernel checked only this way is "compile-checked", not tested.
# Each part says "skipped" and why where its tools (nvcc, triton) are absent; non-zero on any failure.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
NVCC="${NVCC:-nvcc}"
CXX_CHECK="${CXX:-g++}"

triton_check() {  # triton_check [--cuda-log SRC=LOG ...]
  if ! command -v "$PY" >/dev/null 2>&1; then
    echo "triton-check: skipped: no python at $PY"
    return 0
  fi
  "$PY" "$ROOT/tools/triton_check.py" "$@"
}

if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "cuda-check: nvcc not found, CUDA part skipped"
  triton_check
  exit $?
fi

CUDA_HOME_DIR="${CUDA_HOME:-}"
if [ -z "$CUDA_HOME_DIR" ]; then
  NVCC_REAL="$(command -v "$NVCC")"
  # /usr/local/bin/nvcc may be a wrapper; prefer the conventional install.
  if [ -d /usr/local/cuda/include ]; then
    CUDA_HOME_DIR=/usr/local/cuda
  else
    CUDA_HOME_DIR="$(cd "$(dirname "$(readlink -f "$NVCC_REAL")")/.." && pwd)"
  fi
fi
CUDA_INC="$CUDA_HOME_DIR/include"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cuda_check.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
failed_files=()

report() {  # report STATUS FILE LOG
  if [ "$1" = ok ]; then
    echo "cuda-check: ok    $2"
    pass=$((pass + 1))
  else
    echo "cuda-check: FAIL  $2"
    sed 's/^/    /' "$3"
    fail=$((fail + 1))
    failed_files+=("$2")
  fi
}

cd "$ROOT"
mapfile -t CU_FILES < <(find csrc -name '*.cu' -type f | sort)
mapfile -t GLUE_FILES < <(find csrc -name '*_cuda.cpp' -type f | sort)

GENCODE=(-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90a,code=sm_90a)
# The standard setup.py's build gets for nvcc: the one the installed torch's BuildExtension adds
# (c++20 for current torch, c++17 for older); override with CUDA_CHECK_NVCC_STD.
NVCC_STD="${CUDA_CHECK_NVCC_STD:-$("$PY" -c 'import inspect, torch.utils.cpp_extension as c; print("c++20" if "-std=c++20" in inspect.getsource(c) else "c++17")' 2>/dev/null || echo c++17)}"
echo "cuda-check: nvcc -std=$NVCC_STD"

# nvcc runs in parallel (one job per CPU, at most 4): each .cu compiles for two archs.
JOBS="$(nproc 2>/dev/null || echo 2)"
[ "$JOBS" -gt 4 ] && JOBS=4
i=0
pids=()
for f in "${CU_FILES[@]}"; do
  obj="$TMP/cu_$i.o"
  log="$TMP/cu_$i.log"
  ( "$NVCC" -c "-std=$NVCC_STD" -O3 -lineinfo -Xptxas -v "${GENCODE[@]}" -Icsrc "$f" -o "$obj" >"$log" 2>&1
    echo $? >"$TMP/cu_$i.rc" ) &
  pids+=($!)
  i=$((i + 1))
  if [ "${#pids[@]}" -ge "$JOBS" ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
i=0
for f in "${CU_FILES[@]}"; do
  rc="$(cat "$TMP/cu_$i.rc" 2>/dev/null || echo 1)"
  # nvcc warnings are failures too: a warning in a kernel is usually a bug.
  if [ "$rc" = 0 ] && ! grep -qi 'warning' "$TMP/cu_$i.log"; then
    report ok "$f (nvcc -std=$NVCC_STD sm_80 sm_90a)"
  else
    report fail "$f (nvcc sm_80 sm_90a)" "$TMP/cu_$i.log"
  fi
  i=$((i + 1))
done

if [ "${#GLUE_FILES[@]}" -gt 0 ]; then
  if ! TORCH_INCS="$("$PY" -c 'from torch.utils.cpp_extension import include_paths; print("\n".join(include_paths()))' 2>"$TMP/torch.log")"; then
    echo "cuda-check: FAIL  cannot get torch include paths from $PY"
    sed 's/^/    /' "$TMP/torch.log"
    exit 1
  fi
  PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  # Third-party headers go in as -isystem: their own warnings (torch 2.13's headers use C++20
  # bit-field initialisers) are not ours to fail on; warnings in csrc/ still fail the check.
  INC=(-isystem csrc/common/cuda_stub)
  while IFS= read -r d; do [ -n "$d" ] && INC+=(-isystem "$d"); done <<<"$TORCH_INCS"
  INC+=(-isystem "$CUDA_INC" -Icsrc -isystem "$PY_INC")
  # c++17: the oldest supported torch (2.6) builds extensions with it; c++20: torch >= 2.10's
  # cpp_extension default. Override with CUDA_CHECK_CXX_STDS="c++17".
  read -r -a STDS <<<"${CUDA_CHECK_CXX_STDS:-c++17 c++20}"
  i=0
  for f in "${GLUE_FILES[@]}"; do
    for std in "${STDS[@]}"; do
      log="$TMP/cpp_$i.log"
      if "$CXX_CHECK" -fsyntax-only "-std=$std" -DLLMK_WITH_CUDA -Wall -Wextra \
          -Wno-unused-parameter "${INC[@]}" "$f" >"$log" 2>&1 && ! grep -q 'warning' "$log"; then
        report ok "$f (g++ -fsyntax-only -std=$std)"
      else
        report fail "$f (g++ -fsyntax-only -std=$std)" "$log"
      fi
      i=$((i + 1))
    done
  done
fi

# The attention kernels' dynamic shared memory, which ptxas does not see: a host-only program
# prints what the launchers ask for (it runs without a GPU), and the table adds it.
if "$NVCC" "-std=$NVCC_STD" -Icsrc tools/cuda_smem_sizes.cu -o "$TMP/smem_sizes" >"$TMP/smem.log" 2>&1 \
    && "$TMP/smem_sizes" >"$TMP/smem_sizes.txt" 2>>"$TMP/smem.log" && ! grep -qi 'warning' "$TMP/smem.log"; then
  report ok "tools/cuda_smem_sizes.cu (dynamic shared memory of the attention kernels)"
  logs=(--cuda-dynamic-smem "$TMP/smem_sizes.txt")
else
  report fail "tools/cuda_smem_sizes.cu" "$TMP/smem.log"
  logs=()
fi

echo "cuda-check: $pass passed, $fail failed (${#CU_FILES[@]} .cu, ${#GLUE_FILES[@]} glue)"
if [ "$fail" -ne 0 ]; then
  printf 'cuda-check: failed: %s\n' "${failed_files[@]}"
fi

# 3. Triton, and the resource table of both (the CUDA kernels from ptxas's reports above)
i=0
for f in "${CU_FILES[@]}"; do
  [ "$(cat "$TMP/cu_$i.rc" 2>/dev/null || echo 1)" = 0 ] && logs+=(--cuda-log "$f=$TMP/cu_$i.log")
  i=$((i + 1))
done
triton_check "${logs[@]}"
triton_rc=$?
[ "$fail" -ne 0 ] && exit 1
exit "$triton_rc"
