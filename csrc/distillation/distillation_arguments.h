// Argument checks of the distillation entry points, shared by the CPU glue (distillation_cpu.cpp)
// and the CUDA glue (distillation_cuda.cpp): one copy of the rules in distillation.h. Torch core
// headers only (the CUDA glue includes this file; .cu files must not).
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

namespace llmkernels {

// The scalar options of every distillation entry point: temperature > 0 and finite, beta and
// hard_weight in [0, 1].
void check_distillation_options(double temperature, double beta, double hard_weight);

// Checks student (on a device of `device_type`), teacher, target, soft, hard and grad (all on the
// student's device) and their overlaps. Target values are not read here.
// Returns whether grad is the student itself (in place).
bool check_distillation_arguments(const at::Tensor& student, const at::Tensor& teacher,
                                  const std::optional<at::Tensor>& target, const at::Tensor& soft,
                                  const at::Tensor& hard, const std::optional<at::Tensor>& grad,
                                  at::DeviceType device_type);

// The same for a stored top-k teacher: ids (N, k) int64, logprobs (N, k) float32, 1 <= k <= Vs.
// Id values are not read here.
bool check_topk_distillation_arguments(const at::Tensor& student, const at::Tensor& ids,
                                       const at::Tensor& logprobs,
                                       const std::optional<at::Tensor>& target,
                                       const at::Tensor& soft, const at::Tensor& hard,
                                       const std::optional<at::Tensor>& grad,
                                       at::DeviceType device_type);

// topk_logprobs: logits (N, V) on a device of `device_type`, 1 <= k <= V, temperature > 0 and
// finite, ids (N, k) int32 and logprobs (N, k) float32 contiguous on the logits' device.
void check_topk_logprobs_arguments(const at::Tensor& logits, int64_t k, double temperature,
                                   const at::Tensor& ids, const at::Tensor& logprobs,
                                   at::DeviceType device_type);

}  // namespace llmkernels
