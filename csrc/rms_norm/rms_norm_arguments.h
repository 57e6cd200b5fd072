// Argument checks of the rms_norm entry points, shared by the CPU glue (rms_norm_cpu.cpp) and
// the CUDA glue (rms_norm_cuda.cpp): one copy of the rules in rms_norm.h, which also fills the
// kernels' parameters (rms_norm_params.h). Torch core headers only (the CUDA glue includes this
// file; .cu files must not).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "rms_norm_params.h"

namespace llmkernels {

// Checks the forward's arguments (on a device of `device_type`) and returns the kernel parameters.
RmsNormForwardParams rms_norm_forward_params(const at::Tensor& x,
                                             const std::optional<at::Tensor>& residual,
                                             const std::optional<at::Tensor>& weight,
                                             at::Tensor& y, const std::optional<at::Tensor>& h,
                                             at::Tensor& rstd, double eps,
                                             at::DeviceType device_type);

// The backward's parameters and the partial-row buffer they point into (kept alive by the call).
struct RmsNormBackwardCall {
  RmsNormBackwardParams params;
  at::Tensor partial;
};

// Checks the backward's arguments and returns its parameters; with dweight, allocates the
// (blocks, dim) float32 partial rows on inp's device.
RmsNormBackwardCall rms_norm_backward_call(const at::Tensor& grad_y,
                                           const std::optional<at::Tensor>& grad_h,
                                           const at::Tensor& inp,
                                           const std::optional<at::Tensor>& weight,
                                           const at::Tensor& rstd, at::Tensor& dx,
                                           const std::optional<at::Tensor>& dresidual,
                                           const std::optional<at::Tensor>& dweight,
                                           at::DeviceType device_type);

// Rows per block of the deterministic weight-gradient reduction: a function of the row count
// only (never of the thread count), at least 16 rows, and at most 256 blocks.
inline int64_t rms_norm_block_rows(int64_t rows) {
  const int64_t by_count = (rows + 255) / 256;
  return by_count > 16 ? by_count : 16;
}

}  // namespace llmkernels
