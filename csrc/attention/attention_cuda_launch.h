// Launchers for the flash-attention CUDA kernels: raw pointers, int64 element strides, a stream.
// Plain C++ (no torch, no device code) so that the .cu files and the torch glue
// attention_cuda.cpp both include it. Semantics are those of attention.h.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace llmkernels {

// A (B, H, S, D) operand; strides in elements, stride(-1) == 1.
struct AttentionCudaOperand {
  const void* ptr = nullptr;
  int64_t stride_b = 0, stride_h = 0, stride_s = 0;
};

struct AttentionCudaParams {
  AttentionCudaOperand q, k, v;
  AttentionCudaOperand out;   // forward: written (through out_mut); backward: read
  void* out_mut = nullptr;    // forward output, same layout as `out`
  AttentionCudaOperand dout;  // backward only
  float* lse = nullptr;       // (B, Hq, Sq) contiguous; forward writes it, backward reads it
  void* dq = nullptr;         // backward outputs, contiguous, dtype of q
  void* dk = nullptr;
  void* dv = nullptr;
  float* delta = nullptr;     // backward workspace (B, Hq, Sq) float32
  int64_t batch = 0, heads_q = 0, heads_kv = 0, seq_q = 0, seq_k = 0, head_dim = 0;
  float scale = 1.0f;
  bool causal = false;
  int64_t window_left = -1, window_right = -1;
  float softcap = 0.0f;                  // <= 0: off
  const float* alibi_slopes = nullptr;   // (B, Hq) contiguous, or null
  const uint8_t* key_padding_mask = nullptr;  // (B, Sk) bool contiguous (true = attend), or null
};

// Head dims the kernels are built for (padded up to a tile of 32, 64, 128 or 256).
constexpr int64_t kAttentionCudaMinHeadDim = 8;
constexpr int64_t kAttentionCudaMaxHeadDim = 256;

// T is float, __half or __nv_bfloat16 (explicitly instantiated in the .cu files). Each returns
// the first launch error, if any (cudaErrorInvalidConfiguration when the device has too little
// shared memory per block); nothing is synchronised.
template <typename T>
cudaError_t launch_attention_forward(const AttentionCudaParams& params, cudaStream_t stream);
template <typename T>
cudaError_t launch_attention_backward(const AttentionCudaParams& params, cudaStream_t stream);

}  // namespace llmkernels
