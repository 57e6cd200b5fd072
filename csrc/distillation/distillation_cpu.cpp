// Torch glue for the distillation CPU kernel (argument checks: distillation_arguments.h): the
// host-side target check, threading and ISA dispatch. The arithmetic lives in
// distillation_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../common/checks.h"
#include "../common/cpu_elem_type.h"
#include "../common/cpu_isa.h"
#include "distillation.h"
#include "distillation_arguments.h"
#include "distillation_cpu_kernel.h"

namespace llmkernels {
namespace {

cpu::DistillationRowsFn distillation_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::distillation_rows;
    case cpu::Isa::avx512: return &cpu_avx512::distillation_rows;
    case cpu::Isa::avx2: return &cpu_avx2::distillation_rows;
#endif
    default: return &cpu_generic::distillation_rows;
  }
}

cpu::TopkDistillationRowsFn topk_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::topk_distillation_rows;
    case cpu::Isa::avx512: return &cpu_avx512::topk_distillation_rows;
    case cpu::Isa::avx2: return &cpu_avx2::topk_distillation_rows;
#endif
    default: return &cpu_generic::topk_distillation_rows;
  }
}

cpu::TopkLogprobsFn topk_logprobs_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::topk_logprobs;
    case cpu::Isa::avx512: return &cpu_avx512::topk_logprobs;
    case cpu::Isa::avx2: return &cpu_avx2::topk_logprobs;
#endif
    default: return &cpu_generic::topk_logprobs;
  }
}

int64_t round_to_vectors(int64_t n) { return (n + 15) / 16 * 16; }

// Host-side range check of index values: an out-of-range one would read outside the row.
void check_indices(const int64_t* values, int64_t count, int64_t classes, int64_t skip,
                   bool has_skip, const char* name) {
  int64_t bad = -1;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t v = values[i];
    if (!(has_skip && v == skip) && (v < 0 || v >= classes)) {
      bad = i;
      break;
    }
  }
  LLMK_CHECK_ARG(bad < 0, name, "expected indices in [0, ", classes, ")",
                 has_skip ? " or the ignore_index" : "", ", got ", bad < 0 ? 0 : values[bad],
                 " at flat index ", bad);
}

const int64_t* check_target_values(const std::optional<at::Tensor>& target, int64_t rows,
                                   int64_t classes, int64_t ignore_index) {
  if (!target.has_value()) return nullptr;
  const int64_t* values = target->data_ptr<int64_t>();
  check_indices(values, rows, classes, ignore_index, true, "target");
  return values;
}

// The fields both argument structs share.
template <typename Args>
void set_options(Args& args, const at::Tensor& student, int64_t ignore_index, double temperature,
                 double beta, double hard_weight, bool scale_by_temperature, double softcap,
                 double grad_scale) {
  args.student = student.data_ptr();
  args.student_stride = student.stride(0);
  args.student_classes = student.size(1);
  args.ignore_index = ignore_index;
  args.inv_temperature = 1.0 / temperature;
  args.soft_factor = scale_by_temperature ? temperature * temperature : 1.0;
  args.beta = beta;
  args.hard_weight = hard_weight;
  args.softcap = softcap > 0.0 ? softcap : 0.0;
  args.grad_scale = grad_scale;
  args.dtype = cpu::elem_type(student.scalar_type());
}

template <typename Args>
void set_outputs(Args& args, const int64_t* target, at::Tensor& soft, at::Tensor& hard,
                 const std::optional<at::Tensor>& grad) {
  args.target = target;
  args.soft = soft.data_ptr<float>();
  args.hard = hard.data_ptr<float>();
  args.grad = grad.has_value() ? grad->data_ptr() : nullptr;
}

void run_rows(int64_t rows, int64_t classes, int64_t scratch_floats,
              const std::function<void(int64_t, int64_t, float*)>& fn) {
  // ~64K elements per task: enough to amortise scheduling, small enough to balance.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / classes);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> scratch(new float[static_cast<size_t>(scratch_floats)]());
    fn(begin, end, scratch.get());
  });
}

}  // namespace

void distillation_rows_cpu(const at::Tensor& student, const at::Tensor& teacher,
                           const std::optional<at::Tensor>& target, at::Tensor& soft,
                           at::Tensor& hard, const std::optional<at::Tensor>& grad,
                           double temperature, double beta, double hard_weight,
                           int64_t ignore_index, bool scale_by_temperature, double softcap,
                           double grad_scale) {
  check_distillation_arguments(student, teacher, target, soft, hard, grad, at::kCPU);
  check_distillation_options(temperature, beta, hard_weight);
  const int64_t rows = student.size(0), classes = student.size(1);
  const int64_t* target_ptr = check_target_values(target, rows, classes, ignore_index);
  if (rows == 0) return;

  cpu::DistillationRowsArgs args{};
  args.teacher = teacher.data_ptr();
  args.teacher_stride = teacher.stride(0);
  set_outputs(args, target_ptr, soft, hard, grad);
  args.teacher_classes = teacher.size(1);
  set_options(args, student, ignore_index, temperature, beta, hard_weight, scale_by_temperature,
              softcap, grad_scale);

  const cpu::DistillationRowsFn fn = distillation_variant(cpu::selected_isa());
  const int64_t width = std::min(classes, args.teacher_classes);
  const int64_t scratch_floats = round_to_vectors(classes) + round_to_vectors(width);
  run_rows(rows, classes, scratch_floats,
           [&](int64_t begin, int64_t end, float* scratch) { fn(args, begin, end, scratch); });
}

void topk_distillation_rows_cpu(const at::Tensor& student, const at::Tensor& ids,
                                const at::Tensor& logprobs,
                                const std::optional<at::Tensor>& target, at::Tensor& soft,
                                at::Tensor& hard, const std::optional<at::Tensor>& grad,
                                double temperature, double beta, double hard_weight,
                                int64_t ignore_index, bool scale_by_temperature, double softcap,
                                double grad_scale) {
  check_topk_distillation_arguments(student, ids, logprobs, target, soft, hard, grad, at::kCPU);
  check_distillation_options(temperature, beta, hard_weight);
  const int64_t rows = student.size(0), classes = student.size(1), k = ids.size(1);
  const int64_t* target_ptr = check_target_values(target, rows, classes, ignore_index);
  check_indices(ids.data_ptr<int64_t>(), ids.numel(), classes, 0, false, "teacher_ids");
  if (rows == 0) return;

  cpu::TopkDistillationRowsArgs args{};
  args.ids = ids.data_ptr<int64_t>();
  args.logprobs = logprobs.data_ptr<float>();
  set_outputs(args, target_ptr, soft, hard, grad);
  args.k = k;
  set_options(args, student, ignore_index, temperature, beta, hard_weight, scale_by_temperature,
              softcap, grad_scale);

  const cpu::TopkDistillationRowsFn fn = topk_variant(cpu::selected_isa());
  // [zs][gradient row][h: k + 1][saved: k + 1][pad][buckets: k + 1 pairs of doubles]
  const int64_t scratch_floats = 2 * round_to_vectors(classes) + 2 * (k + 1) + 2 + 4 * (k + 1);
  run_rows(rows, classes, scratch_floats,
           [&](int64_t begin, int64_t end, float* scratch) { fn(args, begin, end, scratch); });
}

void topk_logprobs_cpu(const at::Tensor& logits, int64_t k, double temperature, double softcap,
                       at::Tensor& ids, at::Tensor& logprobs) {
  check_topk_logprobs_arguments(logits, k, temperature, ids, logprobs, at::kCPU);
  const int64_t rows = logits.size(0), classes = logits.size(1);
  LLMK_CHECK_ARG(classes <= INT32_MAX, "logits", "expected fewer than 2^31 classes for int32 ids, got ",
                 classes);
  if (rows == 0) return;
  cpu::TopkLogprobsArgs args{};
  args.logits = logits.data_ptr();
  args.stride = logits.stride(0);
  args.ids = ids.data_ptr<int32_t>();
  args.logprobs = logprobs.data_ptr<float>();
  args.classes = classes;
  args.k = k;
  args.inv_temperature = 1.0 / temperature;
  args.softcap = softcap > 0.0 ? softcap : 0.0;
  args.dtype = cpu::elem_type(logits.scalar_type());
  const cpu::TopkLogprobsFn fn = topk_logprobs_variant(cpu::selected_isa());
  run_rows(rows, classes, round_to_vectors(classes) + 2 * k,
           [&](int64_t begin, int64_t end, float* scratch) { fn(args, begin, end, scratch); });
}

}  // namespace llmkernels
