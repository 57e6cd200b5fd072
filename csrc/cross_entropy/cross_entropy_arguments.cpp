// Argument checks of the cross-entropy entry points (see cross_entropy_arguments.h).
#include "cross_entropy_arguments.h"

#include "../common/checks.h"
#include "../common/overlap_checks.h"

namespace llmkernels {
CrossEntropyShape check_cross_entropy_arguments(const at::Tensor& logits, const at::Tensor& target,
                                                const std::optional<at::Tensor>& class_weight,
                                                const at::Tensor& loss_rows, const at::Tensor& lse,
                                                const std::optional<at::Tensor>& grad,
                                                at::DeviceType device_type) {
  LLMK_CHECK_DEVICE_TYPE(logits, "logits", device_type);
  LLMK_CHECK_DIM(logits, "logits", 2);
  LLMK_CHECK_FLOATING(logits, "logits");
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(logits, "logits");
  const at::Device device = logits.device();
  CrossEntropyShape shape;
  shape.rows = logits.size(0);
  shape.classes = logits.size(1);
  const int64_t rows = shape.rows, classes = shape.classes;
  LLMK_CHECK_ARG(classes > 0 || rows == 0, "logits", "expected at least one class, got shape ",
                 logits.sizes());

  LLMK_CHECK_DEVICE(target, "target", device);
  LLMK_CHECK_DTYPE(target, "target", at::kLong);
  LLMK_CHECK_DIM(target, "target", 1);
  LLMK_CHECK_SIZE(target, "target", 0, rows);
  LLMK_CHECK_CONTIGUOUS(target, "target");

  if (class_weight.has_value()) {
    const at::Tensor& w = *class_weight;
    LLMK_CHECK_DEVICE(w, "class_weight", device);
    LLMK_CHECK_DTYPE(w, "class_weight", at::kFloat);
    LLMK_CHECK_DIM(w, "class_weight", 1);
    LLMK_CHECK_SIZE(w, "class_weight", 0, classes);
    LLMK_CHECK_CONTIGUOUS(w, "class_weight");
  }

  check_row_output(loss_rows, "loss_rows", rows, device);
  check_row_output(lse, "lse", rows, device);
  check_disjoint(loss_rows, "loss_rows", lse, "lse");
  check_disjoint(loss_rows, "loss_rows", logits, "logits");
  check_disjoint(lse, "lse", logits, "logits");

  if (grad.has_value()) {
    const at::Tensor& g = *grad;
    LLMK_CHECK_DEVICE(g, "grad", device);
    LLMK_CHECK_DTYPE(g, "grad", logits.scalar_type());
    LLMK_CHECK_SHAPE(g, "grad", logits.sizes());
    LLMK_CHECK_CONTIGUOUS(g, "grad");
    // grad may be logits itself; nothing else may overlap.
    shape.in_place = rows > 0 && classes > 0 && g.data_ptr() == logits.data_ptr() &&
                     g.strides() == logits.strides();
    if (!shape.in_place) check_disjoint(g, "grad", logits, "logits");
    check_disjoint(g, "grad", loss_rows, "loss_rows");
    check_disjoint(g, "grad", lse, "lse");
  }
  return shape;
}

}  // namespace llmkernels
