// SwiGLU: the compiled entry points the Python op routes to.
//
// Contract (the Python layer flattens the leading dims into rows before calling; the C++ side
// re-checks with the shared CHECK macros and raises on mismatch):
//   gate, up, grad        (rows, H), one dtype (float32, float16 or bfloat16), any row stride,
//                         stride(-1) == 1; gate and up may be the two halves of one packed row.
//   out                   (rows, H): silu(gate) * up.
//   grad_gate, grad_up    (rows, H): dy * up * s * (1 + g * (1 - s)) and dy * g * s, s =
//                         sigmoid(g) recomputed (nothing of the forward is kept); they may be
//                         the two halves of one packed (rows, 2H) buffer.
//   activation            0: silu (SwiGLU); 1: gelu, erf; 2: gelu, tanh approximation (GeGLU),
//                         with their derivatives in place of silu's above.
// Outputs must not overlap the inputs or each other. Math in float32, stored in the dtype.
#pragma once
#include <ATen/core/Tensor.h>

namespace llmkernels {

void swiglu_forward_cpu(const at::Tensor& gate, const at::Tensor& up, at::Tensor& out,
                        int64_t activation);
void swiglu_backward_cpu(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up,
                         at::Tensor& grad_gate, at::Tensor& grad_up, int64_t activation);

#ifdef LLMK_WITH_CUDA
void swiglu_forward_cuda(const at::Tensor& gate, const at::Tensor& up, at::Tensor& out,
                         int64_t activation);
void swiglu_backward_cuda(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up,
                          at::Tensor& grad_gate, at::Tensor& grad_up, int64_t activation);
#endif

}  // namespace llmkernels
