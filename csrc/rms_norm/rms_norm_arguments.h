// Argument checks of the rms_norm entry points, shared by the CPU glue (rms_norm_cpu.cpp) and
// the CUDA glue (rms_norm_cuda.cpp): one copy of the rules in rms_norm.h. Torch core headers only
// (the CUDA glue includes this file; .cu files must not).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace llmkernels {

struct RmsNormShape {
  int64_t rows = 0, dim = 0;
};

RmsNormShape check_rms_norm_forward_arguments(const at::Tensor& x,
                                              const std::optional<at::Tensor>& residual,
                                              const std::optional<at::Tensor>& weight,
                                              const at::Tensor& y,
                                              const std::optional<at::Tensor>& h,
                                              const at::Tensor& rstd, double eps,
                                              at::DeviceType device_type);

RmsNormShape check_rms_norm_backward_arguments(const at::Tensor& grad_y,
                                               const std::optional<at::Tensor>& grad_h,
                                               const at::Tensor& inp,
                                               const std::optional<at::Tensor>& weight,
                                               const at::Tensor& rstd, const at::Tensor& dx,
                                               const std::optional<at::Tensor>& dweight,
                                               at::DeviceType device_type);

// Rows per block of the deterministic weight-gradient reduction: a function of the row count
// only (never of the thread count), at least 16 rows, and at most 256 blocks.
inline int64_t rms_norm_block_rows(int64_t rows) {
  const int64_t by_count = (rows + 255) / 256;
  return by_count > 16 ? by_count : 16;
}

}  // namespace llmkernels
