// Launchers of the swiglu CUDA kernels: raw pointers, int64 row strides, a stream. Plain C++
// (no torch, no CUDA device code) so that both swiglu_kernels.cu and the torch glue swiglu_cuda.cpp
// include it. Semantics are those of swiglu.h.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "swiglu_rows.h"

namespace llmkernels {

using SwigluCudaParams = SwigluRows;

// T is float, __half or __nv_bfloat16 (explicitly instantiated in swiglu_kernels.cu).
// Return the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_swiglu_forward(const SwigluCudaParams& params, cudaStream_t stream);
template <typename T>
cudaError_t launch_swiglu_backward(const SwigluCudaParams& params, cudaStream_t stream);

}  // namespace llmkernels
