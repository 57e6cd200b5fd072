// Launcher for the rotary CUDA kernel: raw pointers, int64 element strides, a stream.
// Plain C++ (no torch, no CUDA device code) so that both rotary_kernels.cu and the torch glue
// rotary_cuda.cpp include it. Semantics are those of rotary.h.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace llmkernels {

// One (batch, heads, seq, head_dim) operand; strides in elements, stride(-1) == 1.
struct RotaryCudaOperand {
  const void* in = nullptr;
  void* out = nullptr;  // may equal `in` with the same strides (in place)
  int64_t heads = 0;
  int64_t in_stride_b = 0, in_stride_h = 0, in_stride_s = 0;
  int64_t out_stride_b = 0, out_stride_h = 0, out_stride_s = 0;
  // Columns [rotary_dim, head_dim) are copied only when this is set: in place they already
  // hold the right values.
  bool copy_passthrough = true;
};

struct RotaryCudaParams {
  RotaryCudaOperand q;
  RotaryCudaOperand k;  // k.heads == 0: no k
  int64_t batch = 0, seq = 0, head_dim = 0, rotary_dim = 0;
  const float* cos = nullptr;  // (max_positions, rotary_dim / 2), contiguous
  const float* sin = nullptr;
  const int64_t* position_ids = nullptr;  // (P, seq) contiguous, or null: position = s
  int64_t position_batch_stride = 0;      // 0 when P == 1, seq when P == batch
  bool interleaved = false;
  bool conjugate = false;
};

// T is float, __half or __nv_bfloat16 (explicitly instantiated in rotary_kernels.cu).
// Returns the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_rotary(const RotaryCudaParams& params, cudaStream_t stream);

}  // namespace llmkernels
