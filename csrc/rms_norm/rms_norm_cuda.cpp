// Torch glue for the rms_norm CUDA kernels: device guard, current stream, dtype dispatch
// (argument checks, kernel parameters and the weight-gradient partial buffer:
// rms_norm_arguments.h). Built only with -DLLMK_WITH_CUDA (setup.py on a CUDA torch); the
// kernels are rms_norm_kernels.cu.
#ifdef LLMK_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "rms_norm.h"
#include "rms_norm_arguments.h"
#include "rms_norm_cuda_launch.h"

namespace llmkernels {
namespace {

// The kernels index columns with int.
void check_columns(int64_t dim, const char* name) {
  LLMK_CHECK_ARG(dim < INT_MAX, name, "expected fewer than ", INT_MAX, " columns, got ", dim);
}

cudaStream_t current_stream(const at::Device& dev) {
  return c10::cuda::getCurrentCUDAStream(dev.index()).stream();
}

}  // namespace

void rms_norm_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                           const std::optional<at::Tensor>& weight, at::Tensor& y,
                           const std::optional<at::Tensor>& h, at::Tensor& rstd, double eps) {
  const RmsNormForwardParams p =
      rms_norm_forward_params(x, residual, weight, y, h, rstd, eps, at::kCUDA);
  check_columns(p.dim, "x");
  LLMK_CHECK_ARG(p.rows <= INT_MAX, "x", "expected at most ", INT_MAX, " rows, got ", p.rows);
  if (p.rows == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = current_stream(x.device());
  const cudaError_t err = launch_for_dtype(x.scalar_type(), "rms_norm_forward_cuda", [&](auto t) {
    return launch_rms_norm_forward<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "rms_norm forward");
}

void rms_norm_backward_cuda(const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_h,
                            const at::Tensor& inp, const std::optional<at::Tensor>& weight,
                            const at::Tensor& rstd, at::Tensor& dx,
                            const std::optional<at::Tensor>& dresidual,
                            const std::optional<at::Tensor>& dweight) {
  const RmsNormBackwardCall call = rms_norm_backward_call(grad_y, grad_h, inp, weight, rstd, dx,
                                                          dresidual, dweight, at::kCUDA);
  check_columns(call.params.dim, "inp");
  if (call.params.rows == 0) return;
  const c10::cuda::CUDAGuard guard(inp.device());
  const cudaStream_t stream = current_stream(inp.device());
  const cudaError_t err = launch_for_dtype(inp.scalar_type(), "rms_norm_backward_cuda", [&](auto t) {
    return launch_rms_norm_backward<typename decltype(t)::type>(call.params, stream);
  });
  check_cuda_launch(err, "rms_norm backward");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
