// SwiGLU CPU kernels: the plain-data interface between the torch glue (swiglu_cpu.cpp) and the
// per-ISA variants (swiglu_cpu_<isa>.cpp, built from swiglu_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"
#include "swiglu_rows.h"

namespace llmkernels {
namespace cpu {

// A call's operands (see swiglu_rows.h) and how the kernels store.
struct SwigluRowsArgs {
  SwigluRows t;
  ElemType dtype = ElemType::f32;
  bool stream_out = false;  // non-temporal stores (outputs larger than the caches)
};

// Rows [row_begin, row_end); each variant below is the same code compiled for one ISA level.
using SwigluRowsFn = void (*)(const SwigluRowsArgs&, int64_t row_begin, int64_t row_end);

}  // namespace cpu

#define LLMK_SWIGLU_VARIANT(ns)                                                    \
  namespace ns {                                                                   \
  void swiglu_forward_rows(const cpu::SwigluRowsArgs&, int64_t, int64_t);          \
  void swiglu_backward_rows(const cpu::SwigluRowsArgs&, int64_t, int64_t);         \
  }
LLMK_SWIGLU_VARIANT(cpu_generic)
LLMK_SWIGLU_VARIANT(cpu_avx2)
LLMK_SWIGLU_VARIANT(cpu_avx512)
LLMK_SWIGLU_VARIANT(cpu_avx512bf16)
#undef LLMK_SWIGLU_VARIANT

}  // namespace llmkernels
