// Torch glue for the distillation CUDA kernel: device guard, current stream, dtype dispatch
// (argument checks: distillation_arguments.h). Built only with -DLLMK_WITH_CUDA (setup.py on a
// CUDA torch); the kernel is distillation_kernels.cu. Target values are not range-checked here
// (that would read device memory on the host); see distillation_kernels.cu for what a bad one does.
#ifdef LLMK_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "distillation.h"
#include "distillation_arguments.h"
#include "distillation_cuda_launch.h"

namespace llmkernels {

namespace {

// The options both row kernels (full and top-k teacher) take, as their float parameters: the soft
// part's T^2 factor and both parts' gradient coefficients.
template <typename Params>
void set_row_options(Params& p, double temperature, double beta, double hard_weight, double softcap,
                     bool scale_by_temperature, double grad_scale) {
  const double factor = scale_by_temperature ? temperature * temperature : 1.0;
  p.inv_temperature = static_cast<float>(1.0 / temperature);
  p.soft_factor = static_cast<float>(factor);
  p.beta = static_cast<float>(beta);
  p.softcap = softcap > 0.0 ? static_cast<float>(softcap) : 0.0f;
  p.c_soft = static_cast<float>(grad_scale * (1.0 - hard_weight) * factor / temperature);
  p.c_hard = static_cast<float>(grad_scale * hard_weight);
}

}  // namespace

void distillation_rows_cuda(const at::Tensor& student, const at::Tensor& teacher,
                            const std::optional<at::Tensor>& target, at::Tensor& soft,
                            at::Tensor& hard, const std::optional<at::Tensor>& grad,
                            double temperature, double beta, double hard_weight,
                            int64_t ignore_index, bool scale_by_temperature, double softcap,
                            double grad_scale) {
  check_distillation_arguments(student, teacher, target, soft, hard, grad, at::kCUDA);
  check_distillation_options(temperature, beta, hard_weight);
  LLMK_CHECK_ARG(student.size(0) < INT_MAX, "student", "expected fewer than ", INT_MAX,
                 " rows, got shape ", student.sizes());
  if (student.size(0) == 0) return;

  const at::Device dev = student.device();
  const c10::cuda::CUDAGuard guard(dev);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();

  DistillationCudaParams p;
  p.student = student.data_ptr();
  p.student_stride = student.stride(0);
  p.teacher = teacher.data_ptr();
  p.teacher_stride = teacher.stride(0);
  p.target = target.has_value() ? target->data_ptr<int64_t>() : nullptr;
  p.soft = soft.data_ptr<float>();
  p.hard = hard.data_ptr<float>();
  p.grad = grad.has_value() ? grad->data_ptr() : nullptr;
  p.rows = student.size(0);
  p.student_classes = student.size(1);
  p.teacher_classes = teacher.size(1);
  p.ignore_index = ignore_index;
  set_row_options(p, temperature, beta, hard_weight, softcap, scale_by_temperature, grad_scale);

  const cudaError_t err = launch_for_dtype(student.scalar_type(), "distillation_rows_cuda", [&](auto t) {
    return launch_distillation<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "distillation");
}

void topk_distillation_rows_cuda(const at::Tensor& student, const at::Tensor& ids,
                                 const at::Tensor& logprobs,
                                 const std::optional<at::Tensor>& target, at::Tensor& soft,
                                 at::Tensor& hard, const std::optional<at::Tensor>& grad,
                                 double temperature, double beta, double hard_weight,
                                 int64_t ignore_index, bool scale_by_temperature, double softcap,
                                 double grad_scale) {
  check_topk_distillation_arguments(student, ids, logprobs, target, soft, hard, grad, at::kCUDA);
  check_distillation_options(temperature, beta, hard_weight);
  LLMK_CHECK_ARG(student.size(0) < INT_MAX, "student", "expected fewer than ", INT_MAX,
                 " rows, got shape ", student.sizes());
  if (student.size(0) == 0) return;

  const at::Device dev = student.device();
  const c10::cuda::CUDAGuard guard(dev);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  // the ids' gradients wait here while the tail's are written (see distillation_topk_cuda.cu)
  const at::Tensor scratch = grad.has_value() ? at::empty(ids.sizes(), logprobs.options()) : at::Tensor();

  TopkDistillationCudaParams p;
  p.student = student.data_ptr();
  p.student_stride = student.stride(0);
  p.ids = ids.data_ptr<int64_t>();
  p.logprobs = logprobs.data_ptr<float>();
  p.target = target.has_value() ? target->data_ptr<int64_t>() : nullptr;
  p.soft = soft.data_ptr<float>();
  p.hard = hard.data_ptr<float>();
  p.grad = grad.has_value() ? grad->data_ptr() : nullptr;
  p.scratch = grad.has_value() ? scratch.data_ptr<float>() : nullptr;
  p.rows = student.size(0);
  p.classes = student.size(1);
  p.k = ids.size(1);
  p.ignore_index = ignore_index;
  set_row_options(p, temperature, beta, hard_weight, softcap, scale_by_temperature, grad_scale);

  const cudaError_t err = launch_for_dtype(student.scalar_type(), "topk_distillation_rows_cuda", [&](auto t) {
    return launch_topk_distillation<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "top-k distillation");
}

void topk_logprobs_cuda(const at::Tensor& logits, int64_t k, double temperature, double softcap,
                        at::Tensor& ids, at::Tensor& logprobs) {
  check_topk_logprobs_arguments(logits, k, temperature, ids, logprobs, at::kCUDA);
  LLMK_CHECK_ARG(logits.size(0) < INT_MAX && logits.size(1) < INT_MAX, "logits", "expected fewer than ",
                 INT_MAX, " rows and classes, got shape ", logits.sizes());
  if (logits.size(0) == 0) return;

  const at::Device dev = logits.device();
  const c10::cuda::CUDAGuard guard(dev);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  // the chosen keys before they are ordered (64-bit: see distillation_topk_cuda.cu)
  const at::Tensor scratch = at::empty(ids.sizes(), ids.options().dtype(at::kLong));

  TopkLogprobsCudaParams p;
  p.logits = logits.data_ptr();
  p.stride = logits.stride(0);
  p.ids = ids.data_ptr<int32_t>();
  p.logprobs = logprobs.data_ptr<float>();
  p.scratch = reinterpret_cast<unsigned long long*>(scratch.data_ptr<int64_t>());
  p.rows = logits.size(0);
  p.classes = logits.size(1);
  p.k = k;
  p.inv_temperature = static_cast<float>(1.0 / temperature);
  p.softcap = softcap > 0.0 ? static_cast<float>(softcap) : 0.0f;

  const cudaError_t err = launch_for_dtype(logits.scalar_type(), "topk_logprobs_cuda", [&](auto t) {
    return launch_topk_logprobs<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "topk_logprobs");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
