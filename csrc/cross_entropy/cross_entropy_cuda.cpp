// Torch glue for the cross-entropy CUDA kernel: device guard, current stream, dtype dispatch
// (argument checks: cross_entropy_arguments.h). Built only with -DLLMK_WITH_CUDA (setup.py on a
// CUDA torch); the kernel is cross_entropy_kernels.cu. Target values are not range-checked here
// (that would read device memory on the host); see cross_entropy_kernels.cu for what a bad one does.
#ifdef LLMK_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "cross_entropy.h"
#include "cross_entropy_arguments.h"
#include "cross_entropy_cuda_launch.h"

namespace llmkernels {

void cross_entropy_cuda(const at::Tensor& logits, const at::Tensor& target,
                        const std::optional<at::Tensor>& class_weight, at::Tensor& loss_rows,
                        at::Tensor& lse, const std::optional<at::Tensor>& grad,
                        int64_t ignore_index, double label_smoothing, double z_loss,
                        double softcap, double ce_scale, double z_scale) {
  const CrossEntropyShape shape = check_cross_entropy_arguments(
      logits, target, class_weight, loss_rows, lse, grad, at::kCUDA);
  const int64_t rows = shape.rows, classes = shape.classes;
  LLMK_CHECK_ARG(classes < INT_MAX - 16, "logits", "expected fewer than ", INT_MAX - 16,
                 " classes, got shape ", logits.sizes());
  if (rows == 0) return;

  const at::Device dev = logits.device();
  const c10::cuda::CUDAGuard guard(dev);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();

  CrossEntropyCudaParams p;
  p.logits = logits.data_ptr();
  p.logits_stride = logits.stride(0);
  p.target = target.data_ptr<int64_t>();
  p.class_weight = class_weight.has_value() ? class_weight->data_ptr<float>() : nullptr;
  p.loss_rows = loss_rows.data_ptr<float>();
  p.lse = lse.data_ptr<float>();
  p.grad = grad.has_value() ? grad->data_ptr() : nullptr;
  p.rows = rows;
  p.classes = classes;
  p.ignore_index = ignore_index;
  p.weight_sum = static_cast<double>(classes);
  p.label_smoothing = label_smoothing;
  p.z_loss = z_loss;
  p.softcap = softcap > 0.0 ? softcap : 0.0;
  p.ce_scale = ce_scale;
  p.z_scale = z_scale;

  // sum_c w_c stays on the device (stream-ordered before the row kernel): no host sync.
  at::Tensor weight_sum;
  if (class_weight.has_value() && label_smoothing != 0.0) {
    weight_sum = at::empty({1}, logits.options().dtype(at::kDouble));
    const cudaError_t err = launch_weight_sum(p.class_weight, classes,
                                              weight_sum.data_ptr<double>(), stream);
    check_cuda_launch(err, "cross-entropy weight-sum");
    p.weight_sum_device = weight_sum.data_ptr<double>();
  }

  const cudaError_t err = launch_for_dtype(logits.scalar_type(), "cross_entropy_cuda", [&](auto t) {
    return launch_cross_entropy<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "cross-entropy");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
