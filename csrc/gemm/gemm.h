// float32 GEMM on the CPU: the compiled entry points the fused linear losses' chunk loop calls
// (llmkernels/ops/common/cpu_gemm.py), not an op of its own.
//
//   gemm_cpu(a, b, out, accumulate): out = a @ b, or out += a @ b with `accumulate`.
//     a (m, k), b (k, n): float32 CPU tensors, any strides (a transposed view is read in place);
//     out (m, n): float32, stride 1 in its last dimension, separate from a and b.
//   gemm_cpu_available(): whether this build and the selected CPU ISA level have the kernel (AVX2
//     only; elsewhere the callers keep torch.mm).
// Sums run in float32 with fused multiply-adds, depth slices of 512 added in order: the result
// differs from torch.mm's by rounding only.
#pragma once
#include <ATen/core/Tensor.h>

namespace llmkernels {

void gemm_cpu(const at::Tensor& a, const at::Tensor& b, at::Tensor& out, bool accumulate);
bool gemm_cpu_available();

}  // namespace llmkernels
