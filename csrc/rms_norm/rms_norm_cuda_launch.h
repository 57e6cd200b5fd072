// Launchers for the rms_norm CUDA kernels: raw pointers, a stream. Plain C++ (no torch, no device
// code) so both rms_norm_cuda.cu and the torch glue rms_norm_cuda.cpp include it. Semantics are
// those of rms_norm.h; row strides are in elements, every row is `dim` dense elements.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace llmkernels {

struct RmsNormForwardCudaParams {
  const void* x = nullptr;
  int64_t x_stride = 0;
  const void* residual = nullptr;  // null: h = x, and h is null too
  int64_t residual_stride = 0;
  const float* weight = nullptr;  // (dim,) or null
  void* y = nullptr;
  int64_t y_stride = 0;
  void* h = nullptr;
  int64_t h_stride = 0;
  float* rstd = nullptr;  // (rows,)
  int64_t rows = 0, dim = 0;
  float eps = 0.0f;
};

struct RmsNormBackwardCudaParams {
  const void* grad_y = nullptr;
  int64_t grad_y_stride = 0;
  const void* grad_h = nullptr;  // null: h receives no gradient of its own
  int64_t grad_h_stride = 0;
  const void* inp = nullptr;
  int64_t inp_stride = 0;
  const float* weight = nullptr;  // (dim,) or null
  const float* rstd = nullptr;
  void* dx = nullptr;
  int64_t dx_stride = 0;
  // (blocks, dim) float32 scratch, or null (no weight gradient); block b covers rows
  // [b * block_rows, (b + 1) * block_rows). dweight (dim,) receives their sum in block order.
  float* partial = nullptr;
  float* dweight = nullptr;
  int64_t block_rows = 0;
  int64_t rows = 0, dim = 0;
};

// T is float, __half or __nv_bfloat16 (explicitly instantiated in rms_norm_cuda.cu). Each
// returns the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_rms_norm_forward(const RmsNormForwardCudaParams& params, cudaStream_t stream);
template <typename T>
cudaError_t launch_rms_norm_backward(const RmsNormBackwardCudaParams& params, cudaStream_t stream);

}  // namespace llmkernels
