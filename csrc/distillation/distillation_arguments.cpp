// Argument checks of the distillation entry points (see distillation_arguments.h).
#include "distillation_arguments.h"

#include <cmath>

#include "../common/checks.h"
#include "../common/overlap_checks.h"

namespace llmkernels {
namespace {

void check_student(const at::Tensor& student, at::DeviceType device_type,
                   const char* name = "student") {
  LLMK_CHECK_DEVICE_TYPE(student, name, device_type);
  LLMK_CHECK_DIM(student, name, 2);
  LLMK_CHECK_FLOATING(student, name);
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(student, name);
  LLMK_CHECK_ARG(student.size(1) > 0, name, "expected at least one class, got shape ",
                 student.sizes());
}

// target, soft, hard and grad against the student; whether grad is the student itself.
bool check_outputs(const at::Tensor& student, const std::optional<at::Tensor>& target,
                   const at::Tensor& soft, const at::Tensor& hard,
                   const std::optional<at::Tensor>& grad, const at::Tensor& teacher_data) {
  const int64_t rows = student.size(0);
  if (target.has_value()) {
    LLMK_CHECK_DEVICE(*target, "target", student.device());
    LLMK_CHECK_DTYPE(*target, "target", at::kLong);
    LLMK_CHECK_DIM(*target, "target", 1);
    LLMK_CHECK_SIZE(*target, "target", 0, rows);
    LLMK_CHECK_CONTIGUOUS(*target, "target");
  }
  check_row_output(soft, "soft", rows, student.device());
  check_row_output(hard, "hard", rows, student.device());
  check_disjoint(soft, "soft", hard, "hard");
  check_disjoint(soft, "soft", student, "student");
  check_disjoint(hard, "hard", student, "student");
  if (!grad.has_value()) return false;
  const at::Tensor& g = *grad;
  LLMK_CHECK_DEVICE(g, "grad", student.device());
  LLMK_CHECK_DTYPE(g, "grad", student.scalar_type());
  LLMK_CHECK_SHAPE(g, "grad", student.sizes());
  LLMK_CHECK_CONTIGUOUS(g, "grad");
  const bool in_place = g.numel() > 0 && g.data_ptr() == student.data_ptr() &&
                        g.strides() == student.strides();
  if (!in_place) check_disjoint(g, "grad", student, "student");
  check_disjoint(g, "grad", teacher_data, "teacher");
  check_disjoint(g, "grad", soft, "soft");
  check_disjoint(g, "grad", hard, "hard");
  return in_place;
}

}  // namespace

void check_distillation_options(double temperature, double beta, double hard_weight) {
  LLMK_CHECK_ARG(std::isfinite(temperature) && temperature > 0.0, "temperature",
                 "expected a finite number > 0, got ", temperature);
  LLMK_CHECK_ARG(beta >= 0.0 && beta <= 1.0, "beta", "expected a value in [0, 1], got ", beta);
  LLMK_CHECK_ARG(hard_weight >= 0.0 && hard_weight <= 1.0, "hard_weight",
                 "expected a value in [0, 1], got ", hard_weight);
}

bool check_distillation_arguments(const at::Tensor& student, const at::Tensor& teacher,
                                  const std::optional<at::Tensor>& target, const at::Tensor& soft,
                                  const at::Tensor& hard, const std::optional<at::Tensor>& grad,
                                  at::DeviceType device_type) {
  check_student(student, device_type);
  LLMK_CHECK_DEVICE(teacher, "teacher", student.device());
  LLMK_CHECK_DIM(teacher, "teacher", 2);
  LLMK_CHECK_DTYPE(teacher, "teacher", student.scalar_type());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(teacher, "teacher");
  LLMK_CHECK_SIZE(teacher, "teacher", 0, student.size(0));
  LLMK_CHECK_ARG(teacher.size(1) > 0, "teacher", "expected at least one class, got shape ",
                 teacher.sizes());
  return check_outputs(student, target, soft, hard, grad, teacher);
}

bool check_topk_distillation_arguments(const at::Tensor& student, const at::Tensor& ids,
                                       const at::Tensor& logprobs,
                                       const std::optional<at::Tensor>& target,
                                       const at::Tensor& soft, const at::Tensor& hard,
                                       const std::optional<at::Tensor>& grad,
                                       at::DeviceType device_type) {
  check_student(student, device_type);
  LLMK_CHECK_DEVICE(ids, "teacher_ids", student.device());
  LLMK_CHECK_DTYPE(ids, "teacher_ids", at::kLong);
  LLMK_CHECK_DIM(ids, "teacher_ids", 2);
  LLMK_CHECK_SIZE(ids, "teacher_ids", 0, student.size(0));
  LLMK_CHECK_CONTIGUOUS(ids, "teacher_ids");
  LLMK_CHECK_ARG(ids.size(1) >= 1 && ids.size(1) <= student.size(1), "teacher_ids",
                 "expected k in [1, ", student.size(1), "] columns, got shape ", ids.sizes());
  LLMK_CHECK_DEVICE(logprobs, "teacher_logprobs", student.device());
  LLMK_CHECK_DTYPE(logprobs, "teacher_logprobs", at::kFloat);
  LLMK_CHECK_SHAPE(logprobs, "teacher_logprobs", ids.sizes());
  LLMK_CHECK_CONTIGUOUS(logprobs, "teacher_logprobs");
  return check_outputs(student, target, soft, hard, grad, logprobs);
}

void check_topk_logprobs_arguments(const at::Tensor& logits, int64_t k, double temperature,
                                   const at::Tensor& ids, const at::Tensor& logprobs,
                                   at::DeviceType device_type) {
  check_student(logits, device_type, "logits");
  LLMK_CHECK_ARG(k >= 1 && k <= logits.size(1), "k", "expected k in [1, ", logits.size(1),
                 "], got ", k);
  check_distillation_options(temperature, 0.0, 0.0);
  LLMK_CHECK_DEVICE(ids, "ids", logits.device());
  LLMK_CHECK_DTYPE(ids, "ids", at::kInt);
  LLMK_CHECK_SHAPE(ids, "ids", at::IntArrayRef({logits.size(0), k}));
  LLMK_CHECK_CONTIGUOUS(ids, "ids");
  LLMK_CHECK_DEVICE(logprobs, "logprobs", logits.device());
  LLMK_CHECK_DTYPE(logprobs, "logprobs", at::kFloat);
  LLMK_CHECK_SHAPE(logprobs, "logprobs", ids.sizes());
  LLMK_CHECK_CONTIGUOUS(logprobs, "logprobs");
  check_disjoint(ids, "ids", logprobs, "logprobs");
  check_disjoint(ids, "ids", logits, "logits");
  check_disjoint(logprobs, "logprobs", logits, "logits");
}

}  // namespace llmkernels
