// Argument checks of the cross-entropy entry points, shared by the CPU glue
// (cross_entropy_cpu.cpp) and the CUDA glue (cross_entropy_cuda.cpp): one copy of the rules in
// cross_entropy.h. Torch core headers only (the CUDA glue includes this file; .cu files must not).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace llmkernels {

struct CrossEntropyShape {
  int64_t rows = 0, classes = 0;
  bool in_place = false;  // grad is logits itself (each kernel reads a block before writing it)
};

// Checks logits (on a device of `device_type`), target, class_weight, loss_rows, lse and grad
// (all on logits' device) and their overlaps. Target values are not read here.
CrossEntropyShape check_cross_entropy_arguments(const at::Tensor& logits, const at::Tensor& target,
                                                const std::optional<at::Tensor>& class_weight,
                                                const at::Tensor& loss_rows, const at::Tensor& lse,
                                                const std::optional<at::Tensor>& grad,
                                                at::DeviceType device_type);

}  // namespace llmkernels
