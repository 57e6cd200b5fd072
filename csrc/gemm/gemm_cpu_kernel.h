// float32 GEMM CPU kernel: the plain-data interface between the torch glue (gemm_cpu.cpp) and the
// per-ISA variant (gemm_cpu_avx2.cpp, built from gemm_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

namespace llmkernels {
namespace cpu {

// Blocking of the packed GEMM (see gemm_cpu_kernel_impl.h): a kGemmKc-deep slice of B, kGemmNc
// columns wide, is packed once and swept by kGemmMc-row slices of A. Chosen on the 2-core Zen 3
// (32 KB L1, 512 KB L2 a core): one packed B panel (kGemmKc x 16) fills L1, one packed A slice sits
// in L2, the packed B slice (4 MB) in L3.
constexpr int64_t kGemmMr = 6, kGemmNr = 16;
constexpr int64_t kGemmKc = 512, kGemmMc = 48, kGemmNc = 2048;
// Floats of packing workspace one call of gemm_block needs (A slice, B slice, and the 8-float
// overhang of the vector stores that pack A).
constexpr int64_t kGemmWorkspaceFloats = (kGemmMc + kGemmMr) * kGemmKc + kGemmKc * (kGemmNc + kGemmNr) + 64;

// C (m, n) = A (m, k) @ B (k, n), or C += A @ B with `accumulate`; any strides for A and B (the
// transposed operands of x @ W.T and grad.T @ x are read in place), C with unit column stride.
struct GemmArgs {
  const float* a;
  int64_t a_row_stride, a_col_stride;  // A(i, p) = a[i * a_row_stride + p * a_col_stride]
  const float* b;
  int64_t b_row_stride, b_col_stride;  // B(p, j) = b[p * b_row_stride + j * b_col_stride]
  float* c;
  int64_t c_row_stride;  // C(i, j) = c[i * c_row_stride + j]
  int64_t m, n, k;       // k >= 1
  bool accumulate;
};

// One thread's whole block; `workspace` holds kGemmWorkspaceFloats floats, 64-byte aligned.
using GemmBlockFn = void (*)(const GemmArgs&, float* workspace);

}  // namespace cpu

// One variant, on AVX2 intrinsics; the AVX-512 levels call it too (gemm_cpu.cpp): measured against
// MKL on Zen 3 (AVX2) and Zen 4 (AVX-512), see gemm_cpu_kernel_impl.h.
namespace cpu_avx2 { void gemm_block(const cpu::GemmArgs&, float* workspace); }

}  // namespace llmkernels
