// Softmax cross-entropy, one pass over the logits: the compiled entry points the Python op routes to.
//
// Contract (the Python layer validates and normalises arguments; the C++ side re-checks shapes,
// dtypes and devices with the shared CHECK macros):
//   logits        (N, C), float32, float16 or bfloat16, row stride any, column stride 1. Never written.
//   target        (N,) int64, contiguous. Values are already checked: in [0, C) or == ignore_index.
//   class_weight  optional (C,) float32 contiguous.
//   loss_rows     (N,) float32 out: the per-row loss numerator (see below); 0 for ignored rows.
//   lse           (N,) float32 out: log-sum-exp of the (soft-capped) row; computed for ignored rows too.
//   grad          optional (N, C) out, logits' dtype, contiguous: d(loss)/d(logits) for an upstream
//                 gradient of 1, with the scales below; all zeros for ignored rows.
//   softcap       <= 0 means off; else z = softcap * tanh(x / softcap) first (Gemma 2).
//   ce_scale, z_scale: multiply the cross-entropy part and the z-loss part of each row's gradient
//                 (the Python layer passes 1 for sum/none, 1/denominators for mean).
// With z the (capped) logits in float32, t the target, w the class weights (all 1 when absent),
// W = sum_c w_c, eps = label_smoothing, p_c = exp(z_c - lse):
//   loss_rows[n] = (1 - eps) * w_t * (lse - z_t) + eps / C * (W * lse - sum_c w_c z_c) + z_loss * lse^2
//   d loss_rows / d z_c = (1 - eps) * w_t * (p_c - [c == t]) + eps / C * (W * p_c - w_c)   [times ce_scale]
//                        + 2 * z_loss * lse * p_c                                          [times z_scale]
//   d z_c / d x_c = 1 - (z_c / softcap)^2 with softcap on, else 1.
// Rows are independent: parallelise over rows; each row's reductions run in a fixed order, so the
// result is bitwise the same for any thread count.
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

void cross_entropy_cpu(const at::Tensor& logits, const at::Tensor& target,
                       const std::optional<at::Tensor>& class_weight, at::Tensor& loss_rows,
                       at::Tensor& lse, const std::optional<at::Tensor>& grad, int64_t ignore_index,
                       double label_smoothing, double z_loss, double softcap, double ce_scale,
                       double z_scale);

#ifdef LLMK_WITH_CUDA
// The same on CUDA tensors (cross_entropy_cuda.cpp). Target values are not checked on the host.
void cross_entropy_cuda(const at::Tensor& logits, const at::Tensor& target,
                        const std::optional<at::Tensor>& class_weight, at::Tensor& loss_rows,
                        at::Tensor& lse, const std::optional<at::Tensor>& grad,
                        int64_t ignore_index, double label_smoothing, double z_loss,
                        double softcap, double ce_scale, double z_scale);
#endif

}  // namespace llmkernels
