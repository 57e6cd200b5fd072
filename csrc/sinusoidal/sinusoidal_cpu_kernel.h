// Sinusoidal CPU kernel: the plain-data interface between the torch glue (sinusoidal_cpu.cpp)
// and the per-ISA variants (sinusoidal_cpu_<isa>.cpp, built from sinusoidal_cpu_kernel_impl.h).
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

struct SinusoidalRowsArgs {
  const void* x;
  void* out;
  int64_t x_stride_b, x_stride_s;  // in elements; the last dimension is dense
  int64_t out_stride_b, out_stride_s;
  ElemType dtype;
  const float* table;           // (table_rows, d_model), contiguous: PE of positions [0, table_rows)
  int64_t table_rows;
  const float* inv_freq;        // ceil(d_model / 2) values: PE of positions >= table_rows
  const int64_t* position_ids;  // nullptr: position = sequence index
  int64_t position_stride_b;    // 0 when shared by the batch, else seq
  int64_t seq, d_model;
  float scale;
  bool stream_out;  // non-temporal stores (large outputs that do not alias x)
};

// out = x * scale + PE(pos) for rows [row_begin, row_end) of the flattened (batch, seq) range.
using SinusoidalRowsFn = void (*)(const SinusoidalRowsArgs&, int64_t row_begin, int64_t row_end);

}  // namespace cpu

namespace cpu_generic { void add_sinusoidal_rows(const cpu::SinusoidalRowsArgs&, int64_t, int64_t); }
namespace cpu_avx2 { void add_sinusoidal_rows(const cpu::SinusoidalRowsArgs&, int64_t, int64_t); }
namespace cpu_avx512 { void add_sinusoidal_rows(const cpu::SinusoidalRowsArgs&, int64_t, int64_t); }
namespace cpu_avx512bf16 { void add_sinusoidal_rows(const cpu::SinusoidalRowsArgs&, int64_t, int64_t); }

}  // namespace llmkernels
