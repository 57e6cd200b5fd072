// Rotary CPU kernel: the plain-data interface between the torch glue (rotary_cpu.cpp) and the
// per-ISA variants (rotary_cpu_<isa>.cpp, built from rotary_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

// One (batch, heads, seq, head_dim) tensor and its output; strides in elements.
struct RotaryTensor {
  const void* in;
  void* out;
  int64_t heads;
  int64_t in_stride_b, in_stride_h, in_stride_s;
  int64_t out_stride_b, out_stride_h, out_stride_s;
};

struct RotaryRowsArgs {
  RotaryTensor tensors[2];  // q, then k when num_tensors == 2
  int32_t num_tensors;
  ElemType dtype;
  const float* cos;  // (max_positions, rotary_dim / 2), contiguous
  const float* sin;
  const int64_t* position_ids;  // nullptr: position = sequence index
  int64_t position_stride_b;    // 0 when shared by the batch, else seq
  int64_t seq, head_dim, rotary_dim;
  bool interleaved, conjugate;
  bool stream_out;  // non-temporal stores (large outputs that do not alias an input)
};

// Rotates rows [row_begin, row_end) of the flattened (batch, seq) range, every head of every
// tensor; each variant below is the same code compiled for one ISA level.
using RotaryRowsFn = void (*)(const RotaryRowsArgs&, int64_t row_begin, int64_t row_end);

}  // namespace cpu

namespace cpu_generic { void rotary_rows(const cpu::RotaryRowsArgs&, int64_t, int64_t); }
namespace cpu_avx2 { void rotary_rows(const cpu::RotaryRowsArgs&, int64_t, int64_t); }
namespace cpu_avx512 { void rotary_rows(const cpu::RotaryRowsArgs&, int64_t, int64_t); }
namespace cpu_avx512bf16 { void rotary_rows(const cpu::RotaryRowsArgs&, int64_t, int64_t); }

}  // namespace llmkernels
