// Distillation CPU kernel: the plain-data interface between the torch glue (distillation_cpu.cpp)
// and the per-ISA variants (distillation_cpu_<isa>.cpp, built from distillation_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

struct DistillationRowsArgs {
  const void* student;      // (N, Vs), element stride 1 within a row
  int64_t student_stride;   // row stride in elements
  const void* teacher;      // (N, Vt), the student's dtype, element stride 1 within a row
  int64_t teacher_stride;
  const int64_t* target;    // (N,) or nullptr (every row takes part, no hard part)
  float* soft;              // (N,)
  float* hard;              // (N,)
  void* grad;               // (N, Vs) contiguous, the student's dtype, or nullptr; may be student
  int64_t student_classes, teacher_classes;
  int64_t ignore_index;
  double inv_temperature;   // 1 / T
  double soft_factor;       // T^2 when scaling by temperature, else 1
  double beta, hard_weight, softcap, grad_scale;  // softcap <= 0: off
  ElemType dtype;
};

// The same against a stored top-k teacher (distillation.h): ids (N, k) int64 in [0, Vs), logprobs
// (N, k) float32; the divergence runs over the k ids and a tail bucket (none when k == Vs).
struct TopkDistillationRowsArgs {
  const void* student;
  int64_t student_stride;
  const int64_t* ids;        // (N, k) contiguous
  const float* logprobs;     // (N, k) contiguous
  const int64_t* target;     // (N,) or nullptr
  float* soft;
  float* hard;
  void* grad;                // (N, Vs) contiguous or nullptr; may be student
  int64_t student_classes, k;
  int64_t ignore_index;
  double inv_temperature, soft_factor, beta, hard_weight, softcap, grad_scale;
  ElemType dtype;
};

// topk_logprobs (distillation.h): per row of logits (N, V), the k best columns' ids (int32) and
// log-probabilities log softmax(c(x) / T) there (float32), best first.
struct TopkLogprobsArgs {
  const void* logits;        // (N, V), element stride 1 within a row
  int64_t stride;            // row stride in elements
  int32_t* ids;              // (N, k) contiguous
  float* logprobs;           // (N, k) contiguous
  int64_t classes, k;
  double inv_temperature, softcap;  // softcap <= 0: off
  ElemType dtype;
};

// Rows [row_begin, row_end). `scratch` is per-thread float32 memory of
// distillation_scratch_floats(Vs, Vt) floats (the glue's): [student row: R(Vs)][teacher row: R(min(Vs, Vt))],
// R(n) = n rounded up to 16. Each variant below is the same code compiled for one ISA level.
using DistillationRowsFn = void (*)(const DistillationRowsArgs&, int64_t row_begin,
                                    int64_t row_end, float* scratch);
// Top-k rows: `scratch` holds [student row: R(Vs)][gradient row: R(Vs)][3 * (k + 1) floats].
using TopkDistillationRowsFn = void (*)(const TopkDistillationRowsArgs&, int64_t row_begin,
                                        int64_t row_end, float* scratch);
// topk_logprobs rows: `scratch` holds [logits row: R(V)][2 * k floats].
using TopkLogprobsFn = void (*)(const TopkLogprobsArgs&, int64_t row_begin, int64_t row_end,
                                float* scratch);

}  // namespace cpu

namespace cpu_generic {
void distillation_rows(const cpu::DistillationRowsArgs&, int64_t, int64_t, float*);
void topk_distillation_rows(const cpu::TopkDistillationRowsArgs&, int64_t, int64_t, float*);
void topk_logprobs(const cpu::TopkLogprobsArgs&, int64_t, int64_t, float*);
}
namespace cpu_avx2 {
void distillation_rows(const cpu::DistillationRowsArgs&, int64_t, int64_t, float*);
void topk_distillation_rows(const cpu::TopkDistillationRowsArgs&, int64_t, int64_t, float*);
void topk_logprobs(const cpu::TopkLogprobsArgs&, int64_t, int64_t, float*);
}
namespace cpu_avx512 {
void distillation_rows(const cpu::DistillationRowsArgs&, int64_t, int64_t, float*);
void topk_distillation_rows(const cpu::TopkDistillationRowsArgs&, int64_t, int64_t, float*);
void topk_logprobs(const cpu::TopkLogprobsArgs&, int64_t, int64_t, float*);
}
namespace cpu_avx512bf16 {
void distillation_rows(const cpu::DistillationRowsArgs&, int64_t, int64_t, float*);
void topk_distillation_rows(const cpu::TopkDistillationRowsArgs&, int64_t, int64_t, float*);
void topk_logprobs(const cpu::TopkLogprobsArgs&, int64_t, int64_t, float*);
}

}  // namespace llmkernels
