// Torch glue for the rms_norm CUDA kernels: device guard, current stream, dtype dispatch and the
// weight-gradient partial buffer (argument checks: rms_norm_arguments.h). Built only with
// -DLLMK_WITH_CUDA (setup.py on a CUDA torch); the kernels are rms_norm_cuda.cu.
#ifdef LLMK_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
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
  const RmsNormShape shape =
      check_rms_norm_forward_arguments(x, residual, weight, y, h, rstd, eps, at::kCUDA);
  check_columns(shape.dim, "x");
  LLMK_CHECK_ARG(shape.rows <= INT_MAX, "x", "expected at most ", INT_MAX, " rows, got ",
                 shape.rows);
  if (shape.rows == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  RmsNormForwardCudaParams p;
  p.x = x.data_ptr();
  p.x_stride = x.stride(0);
  if (residual.has_value()) {
    p.residual = residual->data_ptr();
    p.residual_stride = residual->stride(0);
    p.h = h->data_ptr();
    p.h_stride = h->stride(0);
  }
  p.weight = weight.has_value() ? weight->data_ptr<float>() : nullptr;
  p.y = y.data_ptr();
  p.y_stride = y.stride(0);
  p.rstd = rstd.data_ptr<float>();
  p.rows = shape.rows;
  p.dim = shape.dim;
  p.eps = static_cast<float>(eps);
  const cudaStream_t stream = current_stream(x.device());
  const cudaError_t err = launch_for_dtype(x.scalar_type(), "rms_norm_forward_cuda", [&](auto t) {
    return launch_rms_norm_forward<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "rms_norm forward");
}

void rms_norm_backward_cuda(const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_h,
                            const at::Tensor& inp, const std::optional<at::Tensor>& weight,
                            const at::Tensor& rstd, at::Tensor& dx,
                            const std::optional<at::Tensor>& dweight) {
  const RmsNormShape shape = check_rms_norm_backward_arguments(grad_y, grad_h, inp, weight, rstd,
                                                               dx, dweight, at::kCUDA);
  check_columns(shape.dim, "inp");
  if (shape.rows == 0) return;
  const c10::cuda::CUDAGuard guard(inp.device());
  RmsNormBackwardCudaParams p;
  p.grad_y = grad_y.data_ptr();
  p.grad_y_stride = grad_y.stride(0);
  if (grad_h.has_value()) {
    p.grad_h = grad_h->data_ptr();
    p.grad_h_stride = grad_h->stride(0);
  }
  p.inp = inp.data_ptr();
  p.inp_stride = inp.stride(0);
  p.weight = weight.has_value() ? weight->data_ptr<float>() : nullptr;
  p.rstd = rstd.data_ptr<float>();
  p.dx = dx.data_ptr();
  p.dx_stride = dx.stride(0);
  p.rows = shape.rows;
  p.dim = shape.dim;
  p.block_rows = rms_norm_block_rows(shape.rows);
  at::Tensor partial;
  if (dweight.has_value()) {
    const int64_t blocks = (shape.rows + p.block_rows - 1) / p.block_rows;
    partial = at::empty({blocks, shape.dim}, inp.options().dtype(at::kFloat));
    p.partial = partial.data_ptr<float>();
    p.dweight = dweight->data_ptr<float>();
  }
  const cudaStream_t stream = current_stream(inp.device());
  const cudaError_t err = launch_for_dtype(inp.scalar_type(), "rms_norm_backward_cuda", [&](auto t) {
    return launch_rms_norm_backward<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "rms_norm backward");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
