// The rms_norm kernels' arguments as plain data, one copy for the CPU kernels (rms_norm_cpu_kernel.h)
// and the CUDA launchers (rms_norm_cuda_launch.h); filled by rms_norm_arguments.cpp. Types only:
// this header is compiled inside the per-ISA regions (see common/isa_begin.h) and by nvcc.
// Semantics are those of rms_norm.h; row strides are in elements, every row is `dim` dense elements.
// No member initialisers (a constructor is code): declare them value-initialised, `Params p{};`.
#pragma once

#include <cstdint>

namespace llmkernels {

struct RmsNormForwardParams {
  const void* x;
  int64_t x_stride;
  const void* residual;  // null: h = x, and h is null too
  int64_t residual_stride;
  const float* weight;  // (dim,) or null: no scale
  void* y;
  int64_t y_stride;
  void* h;
  int64_t h_stride;
  float* rstd;  // (rows,)
  int64_t rows, dim;
  float eps;
};

struct RmsNormBackwardParams {
  const void* grad_y;
  int64_t grad_y_stride;
  const void* grad_h;  // null: h receives no gradient of its own
  int64_t grad_h_stride;
  const void* inp;
  int64_t inp_stride;
  const float* weight;  // (dim,) or null
  const float* rstd;
  void* dx;
  int64_t dx_stride;
  void* dresidual;  // null, or a second copy of dx in residual's dtype (CPU kernels only)
  int64_t dresidual_stride;
  // (blocks, dim) float32 scratch, or null (no weight gradient): block b sums the rows
  // [b * block_rows, (b + 1) * block_rows); dweight (dim,) receives their sum in block order.
  float* partial;
  float* dweight;
  int64_t block_rows;
  int64_t rows, dim;
};

}  // namespace llmkernels
