// CUDA entry points of fused (flash) attention: same arguments and semantics as the CPU ones in
// attention.h. Defined in attention_cuda.cpp (built with -DLLMK_WITH_CUDA only); head_dim must lie
// in [8, 256].
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

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

}  // namespace llmkernels
