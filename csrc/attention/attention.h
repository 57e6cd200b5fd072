// Fused (flash) attention: the compiled entry points the Python op routes to.
//
// Contract (the Python layer validates and normalises; the C++ side re-checks shapes, dtypes and
// devices with the shared CHECK macros):
//   q             (B, Hq, Sq, D), float32 / float16 / bfloat16, any strides, stride(-1) == 1.
//   k, v          (B, Hkv, Sk, D), q's dtype, any strides, stride(-1) == 1. Hq % Hkv == 0:
//                 query head h reads key/value head h / (Hq / Hkv) (GQA/MQA).
//   out           (B, Hq, Sq, D) output, q's dtype, any strides, stride(-1) == 1.
//   lse           (B, Hq, Sq) float32 output, contiguous: natural-log log-sum-exp of each row's
//                 final scores; -inf for a row that sees no key (its out row is all zeros).
//   scale         multiplies q.k.
//   causal, window_left, window_right: with offset = Sk - Sq (bottom-right alignment), query i
//                 sees key j when (!causal || j <= i + offset) and
//                 (window_left < 0 || j >= i + offset - window_left) and
//                 (window_right < 0 || j <= i + offset + window_right).
//   softcap       <= 0 off; else s = softcap * tanh(s / softcap) after scaling.
//   alibi_slopes  optional float32 (B, Hq) contiguous (the Python layer expands a (Hq,) vector):
//                 s += -slope * |i + offset - j| after the softcap.
//   key_padding_mask optional bool (B, Sk) contiguous, true = attend.
// Scores, in order: s = scale * q.k; softcap; ALiBi; masks. Softmax and P.V accumulate in float32.
//
// Backward: given dout (B, Hq, Sq, D) (any strides, stride(-1) == 1), the forward's out and lse,
// write dq (B, Hq, Sq, D), dk, dv (B, Hkv, Sk, D) (all contiguous, dtype of q; summed over the
// query heads of each group for GQA). With P = exp(s - lse), dP = dout.v^T,
// Delta_i = sum_d dout_i . out_i, dS = P * (dP - Delta); through the softcap dS *= 1 - (s_capped /
// softcap)^2; dq = scale * dS.k, dk = scale * dS^T.q, dv = P^T.dout. Rows with lse = -inf add
// nothing. The CPU backward must be deterministic (fixed reduction order for any thread count).
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

void attention_forward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           at::Tensor& out, at::Tensor& lse, double scale, bool causal,
                           int64_t window_left, int64_t window_right, double softcap,
                           const std::optional<at::Tensor>& alibi_slopes,
                           const std::optional<at::Tensor>& key_padding_mask);

void attention_backward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& out, const at::Tensor& dout, const at::Tensor& lse,
                            at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale,
                            bool causal, int64_t window_left, int64_t window_right,
                            double softcap, const std::optional<at::Tensor>& alibi_slopes,
                            const std::optional<at::Tensor>& key_padding_mask);

#ifdef LLMK_WITH_CUDA
// The same arguments and semantics on CUDA tensors (attention_cuda.cpp); head_dim must lie in
// [8, 256].
void attention_forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            at::Tensor& out, at::Tensor& lse, double scale, bool causal,
                            int64_t window_left, int64_t window_right, double softcap,
                            const std::optional<at::Tensor>& alibi_slopes,
                            const std::optional<at::Tensor>& key_padding_mask);

void attention_backward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& out, const at::Tensor& dout, const at::Tensor& lse,
                             at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale,
                             bool causal, int64_t window_left, int64_t window_right,
                             double softcap, const std::optional<at::Tensor>& alibi_slopes,
                             const std::optional<at::Tensor>& key_padding_mask);
#endif

}  // namespace llmkernels
