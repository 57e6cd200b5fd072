// Cross-entropy CPU kernel: the plain-data interface between the torch glue
// (cross_entropy_cpu.cpp) and the per-ISA variants (cross_entropy_cpu_<isa>.cpp, built from
// cross_entropy_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

struct CrossEntropyRowsArgs {
  const void* logits;          // (N, C), element stride 1 within a row
  int64_t logits_stride;       // row stride in elements
  const int64_t* target;       // (N,)
  const float* class_weight;   // (C,) or nullptr (all ones)
  float* loss_rows;            // (N,)
  float* lse;                  // (N,)
  void* grad;                  // (N, C) contiguous, logits' dtype, or nullptr
  int64_t num_classes;
  int64_t ignore_index;
  double weight_sum;           // W = sum_c w_c (C when unweighted)
  double label_smoothing, z_loss, softcap, ce_scale, z_scale;  // softcap <= 0: off
  ElemType dtype;
  bool stream_grad;            // non-temporal stores for a large gradient that aliases nothing
};

// Rows [row_begin, row_end). `scratch` is per-thread float32 memory, laid out as
//   [e row: R floats, when grad][capped row: R floats, when softcap > 0][block maxima: B floats]
// with R = C rounded up to 16 and B = ceil(C / kMaxStoreBlock) (nullptr when neither is needed);
// cross_entropy_scratch_floats() in the glue computes that size. Each variant below is the same
// code compiled for one ISA level.
using CrossEntropyRowsFn = void (*)(const CrossEntropyRowsArgs&, int64_t row_begin,
                                    int64_t row_end, float* scratch);

}  // namespace cpu

namespace cpu_generic {
void cross_entropy_rows(const cpu::CrossEntropyRowsArgs&, int64_t, int64_t, float*);
}
namespace cpu_avx2 {
void cross_entropy_rows(const cpu::CrossEntropyRowsArgs&, int64_t, int64_t, float*);
}
namespace cpu_avx512 {
void cross_entropy_rows(const cpu::CrossEntropyRowsArgs&, int64_t, int64_t, float*);
}
namespace cpu_avx512bf16 {
void cross_entropy_rows(const cpu::CrossEntropyRowsArgs&, int64_t, int64_t, float*);
}

}  // namespace llmkernels
