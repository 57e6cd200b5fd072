// Launcher for the sinusoidal-encoding CUDA kernel: raw pointers, int64 element strides, a
// stream. Plain C++ (no torch) so both sinusoidal_kernels.cu and the glue include it.
// Semantics are those of sinusoidal.h: out = x * scale + PE[pos], PE computed on the fly.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace llmkernels {

struct SinusoidalCudaParams {
  const void* x = nullptr;  // (batch, seq, d_model), stride(-1) == 1
  void* out = nullptr;      // same shape; may equal x with the same strides
  int64_t batch = 0, seq = 0, d_model = 0;
  int64_t x_stride_b = 0, x_stride_s = 0;
  int64_t out_stride_b = 0, out_stride_s = 0;
  const float* inv_freq = nullptr;        // ceil(d_model / 2) values, contiguous
  const int64_t* position_ids = nullptr;  // (P, seq) contiguous, or null: position = s
  int64_t position_batch_stride = 0;      // 0 when P == 1, seq when P == batch
  float scale = 1.0f;
};

// T is float, __half or __nv_bfloat16 (explicitly instantiated in sinusoidal_kernels.cu).
// Returns the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_add_sinusoidal(const SinusoidalCudaParams& params, cudaStream_t stream);

}  // namespace llmkernels
