// Rotary position embedding: the compiled entry points the Python op routes to.
//
// Contract (the Python layer normalises arguments before calling; the C++ side re-checks
// shapes, dtypes and devices with the shared CHECK macros and raises on mismatch):
//   q, q_out      (batch, heads_q, seq, head_dim), same dtype (float32, float16 or bfloat16),
//                 any strides for dims 0..2, stride(-1) == 1. q_out may alias q (in-place).
//   k, k_out      optional, (batch, heads_k, seq, head_dim), same dtype as q; both or neither.
//   cos, sin      (max_positions, rotary_dim / 2), float32, contiguous; rotary_dim <= head_dim.
//   position_ids  optional int64 (P, seq), contiguous, P == 1 (shared) or P == batch;
//                 absent means position = sequence index. Values are already range-checked.
//   interleaved   false: NeoX/Llama half split, pairs (i, i + rotary_dim/2);
//                 true: GPT-J pairs (2i, 2i + 1).
//   conjugate     rotate by -theta (sin negated): the backward of the forward rotation.
// For each row and pair (a, b) with angle index i at position p:
//   a' = a * cos[p, i] - b * sin[p, i];  b' = b * cos[p, i] + a * sin[p, i]
// computed in float32 and stored in the tensor's dtype; columns >= rotary_dim are copied.
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

void rotary_cpu(const at::Tensor& q, at::Tensor& q_out, const std::optional<at::Tensor>& k,
                const std::optional<at::Tensor>& k_out, const at::Tensor& cos,
                const at::Tensor& sin, const std::optional<at::Tensor>& position_ids,
                bool interleaved, bool conjugate);

#ifdef LLMK_WITH_CUDA
void rotary_cuda(const at::Tensor& q, at::Tensor& q_out, const std::optional<at::Tensor>& k,
                 const std::optional<at::Tensor>& k_out, const at::Tensor& cos,
                 const at::Tensor& sin, const std::optional<at::Tensor>& position_ids,
                 bool interleaved, bool conjugate);
#endif

}  // namespace llmkernels
