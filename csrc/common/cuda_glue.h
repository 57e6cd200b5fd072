// Helpers of the CUDA torch glue (*_cuda.cpp only: torch and CUDA runtime headers; never from a
// .cu file): the dtype switch that picks a launcher's element type, and the launch-error check.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace llmkernels {

template <typename T>
struct CudaElem {
  using type = T;
};

// Returns launch(CudaElem<T>{}) with T the CUDA element type of `dtype` (float, __half or
// __nv_bfloat16). `what` names the entry point in the error for any other dtype.
template <typename F>
cudaError_t launch_for_dtype(at::ScalarType dtype, const char* what, const F& launch) {
  switch (dtype) {
    case at::kFloat: return launch(CudaElem<float>{});
    case at::kHalf: return launch(CudaElem<__half>{});
    case at::kBFloat16: return launch(CudaElem<__nv_bfloat16>{});
    default: TORCH_CHECK(false, "llmkernels: ", what, ": unhandled dtype ", dtype);
  }
  return cudaErrorInvalidValue;
}

inline void check_cuda_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "llmkernels: ", what, " CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

}  // namespace llmkernels
