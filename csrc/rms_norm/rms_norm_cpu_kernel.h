// RMSNorm CPU kernel: the plain-data interface between the torch glue (rms_norm_cpu.cpp) and the
// per-ISA variants (rms_norm_cpu_<isa>.cpp, built from rms_norm_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

// Row strides in elements; every row is `dim` dense elements.
struct RmsNormForwardArgs {
  ElemType dtype;
  int64_t dim;
  const void* x;
  int64_t x_stride;
  const void* residual;  // nullptr: h = x (and h_out is nullptr too)
  int64_t residual_stride;
  const float* weight;  // nullptr: no scale
  void* y;
  int64_t y_stride;
  void* h;
  int64_t h_stride;
  float* rstd;
  float eps;
};

struct RmsNormBackwardArgs {
  ElemType dtype;
  int64_t rows, dim;
  const void* grad_y;
  int64_t grad_y_stride;
  const void* grad_h;  // nullptr: h receives no gradient of its own
  int64_t grad_h_stride;
  const void* inp;
  int64_t inp_stride;
  const float* weight;  // nullptr: no scale
  const float* rstd;
  void* dx;
  int64_t dx_stride;
  float* dweight_partial;  // nullptr, or (blocks, dim): block b sums rows [b, b + 1) * block_rows
  int64_t block_rows;
};

// Forward of rows [row_begin, row_end); backward of the row blocks [block_begin, block_end).
// `scratch` holds float32 copies of the rows a task reads, each padded to whole vectors: one row
// of (dim + 15) / 16 * 16 floats for the forward, two for the backward. (No inline function
// here: this header is also compiled inside the per-ISA regions, see isa_begin.h.)
// Each variant below is the same code compiled for one ISA level.
using RmsNormForwardFn = void (*)(const RmsNormForwardArgs&, int64_t row_begin, int64_t row_end,
                                  float* scratch);
using RmsNormBackwardFn = void (*)(const RmsNormBackwardArgs&, int64_t block_begin,
                                   int64_t block_end, float* scratch);

}  // namespace cpu

#define LLMK_RMS_NORM_VARIANT(ns)                                                          \
  namespace ns {                                                                           \
  void rms_norm_forward_rows(const cpu::RmsNormForwardArgs&, int64_t, int64_t, float*);    \
  void rms_norm_backward_blocks(const cpu::RmsNormBackwardArgs&, int64_t, int64_t, float*); \
  }
LLMK_RMS_NORM_VARIANT(cpu_generic)
LLMK_RMS_NORM_VARIANT(cpu_avx2)
LLMK_RMS_NORM_VARIANT(cpu_avx512)
LLMK_RMS_NORM_VARIANT(cpu_avx512bf16)
#undef LLMK_RMS_NORM_VARIANT

}  // namespace llmkernels
