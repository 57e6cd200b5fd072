// Sinusoidal kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
#include "sinusoidal_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"

constexpr int64_t kBlock = cpu::kMaxStoreBlock;

template <typename T, bool kStream>
void add_row(const T* x, T* out, const float* pe, float scale, int64_t d_model) {
  alignas(64) float buf[kBlock];
  for (int64_t i0 = 0; i0 < d_model; i0 += kBlock) {
    const int64_t n = min_i64(kBlock, d_model - i0);
    load_f32(x + i0, buf, n);
    for (int64_t i = 0; i < n; ++i) buf[i] = buf[i] * scale + pe[i0 + i];
    store_out<kStream>(buf, out + i0, n);
  }
}

// PE columns [i0, i0 + n) of position p, computed from the angles (a position past the table):
// angle = float(p) * inv_freq[i] in float32 as in the reference, libm's sinf/cosf (the builtins
// call the same library function at every ISA level, so the result does not depend on the level).
LLMK_ALWAYS_INLINE void compute_pe(float* pe, int64_t p, const float* inv_freq, int64_t i0, int64_t n) {
  const float position = static_cast<float>(p);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t column = i0 + j;
    const float angle = position * inv_freq[column / 2];
    pe[j] = (column % 2 == 0) ? __builtin_sinf(angle) : __builtin_cosf(angle);
  }
}

template <typename T, bool kStream>
void add_row_computed(const T* x, T* out, int64_t p, const float* inv_freq, float scale, int64_t d_model) {
  alignas(64) float buf[kBlock];
  alignas(64) float pe[kBlock];
  for (int64_t i0 = 0; i0 < d_model; i0 += kBlock) {
    const int64_t n = min_i64(kBlock, d_model - i0);
    load_f32(x + i0, buf, n);
    compute_pe(pe, p, inv_freq, i0, n);
    for (int64_t i = 0; i < n; ++i) buf[i] = buf[i] * scale + pe[i];
    store_out<kStream>(buf, out + i0, n);
  }
}

template <typename T, bool kStream>
void add_rows_typed(const cpu::SinusoidalRowsArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t b = r / a.seq;
    const int64_t s = r - b * a.seq;
    const int64_t p = a.position_ids ? a.position_ids[b * a.position_stride_b + s] : s;
    const T* x = static_cast<const T*>(a.x) + b * a.x_stride_b + s * a.x_stride_s;
    T* out = static_cast<T*>(a.out) + b * a.out_stride_b + s * a.out_stride_s;
    if (p < a.table_rows)
      add_row<T, kStream>(x, out, a.table + p * a.d_model, a.scale, a.d_model);
    else
      add_row_computed<T, kStream>(x, out, p, a.inv_freq, a.scale, a.d_model);
  }
  if (kStream) stream_fence();
}

}  // namespace

void add_sinusoidal_rows(const cpu::SinusoidalRowsArgs& a, int64_t row_begin, int64_t row_end) {
  visit_elem_type(a.dtype, [&](auto type) {
    using T = typename decltype(type)::type;
    if (a.stream_out)
      add_rows_typed<T, true>(a, row_begin, row_end);
    else
      add_rows_typed<T, false>(a, row_begin, row_end);
  });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
