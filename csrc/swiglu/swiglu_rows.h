// The plain-data view of a swiglu call, shared by the CPU kernels (swiglu_cpu_kernel.h) and the
// CUDA launchers (swiglu_cuda_launch.h): no torch, no CUDA, so both sides include it.
#pragma once

#include <cstdint>

namespace llmkernels {

// (rows, cols) operands; row strides in elements, the columns dense. The forward reads gate and
// up and writes out; the backward reads grad, gate and up and writes grad_gate and grad_up (the
// operands a pass does not use are null).
struct SwigluRows {
  const void* gate = nullptr;
  const void* up = nullptr;
  const void* grad = nullptr;
  void* out = nullptr;
  void* grad_gate = nullptr;
  void* grad_up = nullptr;
  int64_t gate_stride = 0, up_stride = 0, grad_stride = 0;
  int64_t out_stride = 0, grad_gate_stride = 0, grad_up_stride = 0;
  int64_t rows = 0, cols = 0;
  int32_t activation = 0;  // a SwigluActivation
};

// The gated unit's activation (the Python ops' ACTIVATION_CODES): silu for SwiGLU, gelu (erf)
// and its tanh approximation for GeGLU.
enum SwigluActivation : int32_t { kSilu = 0, kGelu = 1, kGeluTanh = 2 };

}  // namespace llmkernels
