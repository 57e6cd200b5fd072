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

template <typename T, bool kStream>
void add_rows_typed(const cpu::SinusoidalRowsArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t b = r / a.seq;
    const int64_t s = r - b * a.seq;
    const int64_t p = a.position_ids ? a.position_ids[b * a.position_stride_b + s] : s;
    add_row<T, kStream>(static_cast<const T*>(a.x) + b * a.x_stride_b + s * a.x_stride_s,
            static_cast<T*>(a.out) + b * a.out_stride_b + s * a.out_stride_s,
            a.table + p * a.d_model, a.scale, a.d_model);
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
