// Torch glue for the swiglu CUDA kernels: checks, device guard, current stream, dtype dispatch.
// Built only with -DLLMK_WITH_CUDA (setup.py on a CUDA torch); the kernels are swiglu_kernels.cu.
#ifdef LLMK_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "swiglu.h"
#include "swiglu_arguments.h"
#include "swiglu_cuda_launch.h"

namespace llmkernels {
namespace {

template <typename Launch>
void launch_on(const at::Tensor& gate, const char* what, const Launch& launch) {
  const c10::cuda::CUDAGuard guard(gate.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(gate.device().index()).stream();
  const cudaError_t err = launch_for_dtype(gate.scalar_type(), what, [&](auto t) {
    return launch(t, stream);
  });
  check_cuda_launch(err, what);
}

}  // namespace

void swiglu_forward_cuda(const at::Tensor& gate, const at::Tensor& up, at::Tensor& out,
                         int64_t activation) {
  const SwigluCudaParams p = check_swiglu_forward_arguments(gate, up, out, activation, at::kCUDA);
  launch_on(gate, "swiglu_forward_cuda", [&](auto t, cudaStream_t stream) {
    return launch_swiglu_forward<typename decltype(t)::type>(p, stream);
  });
}

void swiglu_backward_cuda(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up,
                          at::Tensor& grad_gate, at::Tensor& grad_up, int64_t activation) {
  const SwigluCudaParams p =
      check_swiglu_backward_arguments(grad, gate, up, grad_gate, grad_up, activation, at::kCUDA);
  launch_on(gate, "swiglu_backward_cuda", [&](auto t, cudaStream_t stream) {
    return launch_swiglu_backward<typename decltype(t)::type>(p, stream);
  });
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
