// Sinusoidal position encoding ("Attention Is All You Need"): out = x * scale + PE[pos].
//
// Contract (the Python layer normalises arguments; the C++ side re-checks them):
//   x, out        (batch, seq, d_model), same dtype (float32, float16 or bfloat16), any strides
//                 for dims 0..1, stride(-1) == 1. out may alias x.
//   position_ids  optional int64 (P, seq), contiguous, P == 1 or P == batch; absent means
//                 position = sequence index. Values are already range-checked (>= 0).
//   scale         multiplies x before the encoding is added.
// PE(p, 2i) = sin(angle), PE(p, 2i + 1) = cos(angle), angle = float(p) * inv_freq[i] in float32,
// inv_freq[i] = base^(-2i / d_model) (rounded to float32 by the caller). Math in float32, result
// stored in x's dtype.
//
// The CPU kernel reads PE of positions [0, table_rows) from a precomputed float32 table
// (table_rows, d_model), contiguous, built by the caller with exactly that formula (vectorised
// sin/cos are not available to the header-free ISA kernels), and computes PE of any later
// position from inv_freq with libm's sinf/cosf: the caller bounds the table, so one huge position
// id costs one row of work, not a table up to it. The CUDA kernel computes PE on the fly from inv_freq
// (float32, ceil(d_model / 2) values, contiguous) with precise sinf/cosf (no fast-math).
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

void add_sinusoidal_cpu(const at::Tensor& x, at::Tensor& out, const at::Tensor& table,
                        const at::Tensor& inv_freq, const std::optional<at::Tensor>& position_ids,
                        double scale);

#ifdef LLMK_WITH_CUDA
void add_sinusoidal_cuda(const at::Tensor& x, at::Tensor& out, const at::Tensor& inv_freq,
                         const std::optional<at::Tensor>& position_ids, double scale);
#endif

}  // namespace llmkernels
