// RMSNorm CPU kernel: the plain-data interface between the torch glue (rms_norm_cpu.cpp) and the
// per-ISA variants (rms_norm_cpu_<isa>.cpp, built from rms_norm_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"
#include "rms_norm_params.h"

namespace llmkernels {
namespace cpu {

// Each operand's element type: the kernels convert every operand on its own, so x (bf16) and
// residual (float32) may differ, and y may be written in a narrower dtype than h (see rms_norm.h).
struct RmsNormForwardTypes {
  ElemType x, residual, h, y;
};
struct RmsNormBackwardTypes {
  ElemType grad_y, grad_h, inp, dx, dresidual;
};

// Forward of rows [row_begin, row_end); backward of the row blocks [block_begin, block_end).
// `weight` is never null here (the glue passes ones for none). `scratch` holds a task's float32
// rows, each padded to whole vectors ((dim + 15) / 16 * 16 floats): the float32 copies of the
// rows it reads and the stages of streamed outputs, kForwardScratchRows / kBackwardScratchRows
// of them. (No inline function here: this header is also compiled inside the per-ISA regions,
// see isa_begin.h.)
constexpr int64_t kForwardScratchRows = 2;
constexpr int64_t kBackwardScratchRows = 5;
// Each variant below is the same code compiled for one ISA level.
using RmsNormForwardFn = void (*)(const RmsNormForwardParams&, const RmsNormForwardTypes& types,
                                  int64_t row_begin, int64_t row_end, float* scratch);
using RmsNormBackwardFn = void (*)(const RmsNormBackwardParams&, const RmsNormBackwardTypes& types,
                                   int64_t block_begin, int64_t block_end, float* scratch);

}  // namespace cpu

#define LLMK_RMS_NORM_VARIANT(ns)                                                          \
  namespace ns {                                                                           \
  void rms_norm_forward_rows(const RmsNormForwardParams&, const cpu::RmsNormForwardTypes&,  \
                             int64_t, int64_t, float*);                                    \
  void rms_norm_backward_blocks(const RmsNormBackwardParams&, const cpu::RmsNormBackwardTypes&, \
                                int64_t, int64_t, float*);                                 \
  }
LLMK_RMS_NORM_VARIANT(cpu_generic)
LLMK_RMS_NORM_VARIANT(cpu_avx2)
LLMK_RMS_NORM_VARIANT(cpu_avx512)
LLMK_RMS_NORM_VARIANT(cpu_avx512bf16)
#undef LLMK_RMS_NORM_VARIANT

}  // namespace llmkernels
