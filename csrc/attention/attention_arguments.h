// Argument checks of the attention entry points, shared by the CPU glue (attention_cpu.cpp) and
// the CUDA glue (attention_cuda.cpp): one copy of the rules in attention.h. Torch core headers
// only (the CUDA glue includes this file; .cu files must not).
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "attention_cpu_kernel.h"

namespace llmkernels {

// Checks q, k, v (on a device of `device_type`; k, v and the optional inputs on q's device) and
// the optional inputs; returns everything the kernels take but the tensor pointers.
cpu::AttentionParams check_attention_inputs(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, double scale, bool causal,
                                            int64_t window_left, int64_t window_right,
                                            double softcap,
                                            const std::optional<at::Tensor>& alibi_slopes,
                                            const std::optional<at::Tensor>& key_padding_mask,
                                            at::DeviceType device_type);

// The forward's outputs: out like q, lse (B, Hq, Sq) float32, neither overlapping an input.
void check_attention_forward_outputs(const cpu::AttentionParams& p, const at::Tensor& q,
                                     const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& out, const at::Tensor& lse);

// The backward's extra inputs (out, dout, lse) and its contiguous outputs dq, dk, dv, which may
// overlap nothing.
void check_attention_backward_tensors(const cpu::AttentionParams& p, const at::Tensor& q,
                                      const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& out, const at::Tensor& dout,
                                      const at::Tensor& lse, const at::Tensor& dq,
                                      const at::Tensor& dk, const at::Tensor& dv);

}  // namespace llmkernels
