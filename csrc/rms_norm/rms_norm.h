// RMSNorm with the fused residual add: the compiled entry points the Python op routes to.
//
// Contract (the Python layer flattens to rows and normalises arguments before calling; the C++
// side re-checks shapes, dtypes, devices and overlaps with the shared CHECK macros):
//   forward:  x, residual (optional)   (rows, D) float32/float16/bfloat16, stride(-1) == 1, any
//                                       row stride; residual has x's shape
//             weight (optional)        (D,) float32, contiguous
//             y, h (h iff residual)    (rows, D), stride(-1) == 1; separate memory
//             rstd                     (rows,) float32, contiguous
//             eps                      finite, > 0
//     h = x (+ residual), stored in h's dtype; y = h_stored * rstd (* weight) with
//     rstd = 1 / sqrt(mean(h_stored^2) + eps), all in float32, rounded once into y's dtype.
//   backward: grad_y, grad_h (optional), inp (the saved h or x), dx, dresidual (optional):
//             (rows, D); weight (optional, float32 (D,)), rstd (rows,) float32; dweight
//             (optional, float32 (D,), contiguous): written when given.
//     xhat = inp * rstd, g = grad_y (* weight),
//     dx = rstd * (g - xhat * mean(g * xhat)) (+ grad_h),  dweight = sum_rows grad_y * xhat,
//     dresidual (when given) the same values as dx, each rounded once into its own dtype.
//   Dtypes: on CPU every (rows, D) operand may have its own (the Python op picks h's as
//   x + residual would, y's as asked); the CUDA kernels take one dtype for all of them and no
//   dresidual (the Python op casts around them).
//     the sum reduced deterministically: fixed blocks of rows (a function of rows only), one
//     float32 partial row per block, the partials summed in block order.
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

void rms_norm_forward_cpu(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                          const std::optional<at::Tensor>& weight, at::Tensor& y,
                          const std::optional<at::Tensor>& h, at::Tensor& rstd, double eps);
void rms_norm_backward_cpu(const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_h,
                           const at::Tensor& inp, const std::optional<at::Tensor>& weight,
                           const at::Tensor& rstd, at::Tensor& dx,
                           const std::optional<at::Tensor>& dresidual,
                           const std::optional<at::Tensor>& dweight);

#ifdef LLMK_WITH_CUDA
void rms_norm_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                           const std::optional<at::Tensor>& weight, at::Tensor& y,
                           const std::optional<at::Tensor>& h, at::Tensor& rstd, double eps);
void rms_norm_backward_cuda(const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_h,
                            const at::Tensor& inp, const std::optional<at::Tensor>& weight,
                            const at::Tensor& rstd, at::Tensor& dx,
                            const std::optional<at::Tensor>& dresidual,
                            const std::optional<at::Tensor>& dweight);
#endif

}  // namespace llmkernels
