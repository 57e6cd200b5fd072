// Launchers for the rms_norm CUDA kernels: raw pointers, a stream. Plain C++ (no torch, no device
// code) so both rms_norm_kernels.cu and the torch glue rms_norm_cuda.cpp include it. Semantics are
// those of rms_norm.h; the arguments are rms_norm_params.h.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "rms_norm_params.h"

namespace llmkernels {

// T is float, __half or __nv_bfloat16 (explicitly instantiated in rms_norm_kernels.cu). Each
// returns the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_rms_norm_forward(const RmsNormForwardParams& params, cudaStream_t stream);
template <typename T>
cudaError_t launch_rms_norm_backward(const RmsNormBackwardParams& params, cudaStream_t stream);

}  // namespace llmkernels
