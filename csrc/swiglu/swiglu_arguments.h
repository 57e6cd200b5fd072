// Argument checks of the swiglu entry points, shared by the CPU glue (swiglu_cpu.cpp) and the
// CUDA glue (swiglu_cuda.cpp): one copy of the rules in swiglu.h. Torch core headers only.
#pragma once

#include <ATen/core/Tensor.h>

#include "swiglu_rows.h"

namespace llmkernels {

// gate (on a device of `device_type`), up and out: (rows, H) each, one dtype and device.
// Returns their pointers and strides for the kernels.
SwigluRows check_swiglu_forward_arguments(const at::Tensor& gate, const at::Tensor& up,
                                          const at::Tensor& out, int64_t activation,
                                          at::DeviceType device_type);

// The same for grad, gate, up and the two gradient outputs.
SwigluRows check_swiglu_backward_arguments(const at::Tensor& grad, const at::Tensor& gate,
                                           const at::Tensor& up, const at::Tensor& grad_gate,
                                           const at::Tensor& grad_up, int64_t activation,
                                           at::DeviceType device_type);

}  // namespace llmkernels
