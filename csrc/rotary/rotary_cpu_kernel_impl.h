// Rotary kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
#include "rotary_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"

// Pairs per block: the block's inputs are converted to float32 scratch first, which also makes
// the in-place case (out == in) safe, since a block is fully read before it is written.
constexpr int64_t kPairBlock = 64;
// Rows per tile: heads are looped inside a tile so the tile's cos/sin rows stay in L1 while each
// head streams through a contiguous run of rows in the (batch, heads, seq, dim) layout.
constexpr int64_t kTileRows = 64;
static_assert(2 * kPairBlock <= cpu::kMaxStoreBlock, "store blocks exceed the scratch buffer");

template <typename T, bool kInterleaved, bool kStream>
void rotate_row(const T* in, T* out, const float* cos_row, const float* sin_row, float sin_sign,
                int64_t half, int64_t head_dim) {
  alignas(64) float x[2 * kPairBlock];
  alignas(64) float y[2 * kPairBlock];
  for (int64_t i0 = 0; i0 < half; i0 += kPairBlock) {
    const int64_t n = min_i64(kPairBlock, half - i0);
    const float* c = cos_row + i0;
    const float* s = sin_row + i0;
    if (kInterleaved) {
      load_f32(in + 2 * i0, x, 2 * n);
      for (int64_t i = 0; i < n; ++i) {
        const float a = x[2 * i], b = x[2 * i + 1], si = s[i] * sin_sign;
        y[2 * i] = a * c[i] - b * si;
        y[2 * i + 1] = b * c[i] + a * si;
      }
      store_out<kStream>(y, out + 2 * i0, 2 * n);
    } else {
      float* xa = x;
      float* xb = x + kPairBlock;
      float* ya = y;
      float* yb = y + kPairBlock;
      load_f32(in + i0, xa, n);
      load_f32(in + half + i0, xb, n);
      for (int64_t i = 0; i < n; ++i) {
        const float si = s[i] * sin_sign;
        ya[i] = xa[i] * c[i] - xb[i] * si;
        yb[i] = xb[i] * c[i] + xa[i] * si;
      }
      store_out<kStream>(ya, out + i0, n);
      store_out<kStream>(yb, out + half + i0, n);
    }
  }
  if (out == in) return;
  if (kStream)
    stream_store_bytes(out + 2 * half, in + 2 * half,
                       (head_dim - 2 * half) * static_cast<int64_t>(sizeof(T)));
  else
    copy_elems(in + 2 * half, out + 2 * half, head_dim - 2 * half);
}

template <typename T, bool kInterleaved, bool kStream>
void rotary_rows_typed(const cpu::RotaryRowsArgs& a, int64_t row_begin, int64_t row_end) {
  const int64_t half = a.rotary_dim / 2;
  const float sin_sign = a.conjugate ? -1.0f : 1.0f;
  for (int64_t r0 = row_begin; r0 < row_end;) {
    const int64_t b = r0 / a.seq;
    const int64_t s0 = r0 - b * a.seq;
    const int64_t n = min_i64(min_i64(kTileRows, a.seq - s0), row_end - r0);
    const int64_t* pos = a.position_ids ? a.position_ids + b * a.position_stride_b + s0 : nullptr;
    for (int32_t t = 0; t < a.num_tensors; ++t) {
      const cpu::RotaryTensor& tv = a.tensors[t];
      const T* in_b = static_cast<const T*>(tv.in) + b * tv.in_stride_b + s0 * tv.in_stride_s;
      T* out_b = static_cast<T*>(tv.out) + b * tv.out_stride_b + s0 * tv.out_stride_s;
      const auto rotate = [&](int64_t h, int64_t j) {
        const int64_t p = pos ? pos[j] : s0 + j;
        rotate_row<T, kInterleaved, kStream>(in_b + h * tv.in_stride_h + j * tv.in_stride_s,
                                             out_b + h * tv.out_stride_h + j * tv.out_stride_s,
                                             a.cos + p * half, a.sin + p * half, sin_sign, half,
                                             a.head_dim);
      };
      // Walk memory in order. A (batch, seq, heads, dim) projection seen as (batch, heads, seq, dim)
      // has its heads adjacent: stepping through one head's rows instead jumps by the row stride,
      // and at strides that are multiples of a few cache lines (1 or 1.5 KB: 256 or 384 float32
      // columns) those rows share a handful of L1 sets and evict each other (3-4x slower).
      if (tv.in_stride_h < tv.in_stride_s) {
        for (int64_t j = 0; j < n; ++j)
          for (int64_t h = 0; h < tv.heads; ++h) rotate(h, j);
      } else {
        for (int64_t h = 0; h < tv.heads; ++h)
          for (int64_t j = 0; j < n; ++j) rotate(h, j);
      }
    }
    r0 += n;
  }
  if (kStream) stream_fence();
}

}  // namespace

void rotary_rows(const cpu::RotaryRowsArgs& a, int64_t row_begin, int64_t row_end) {
  visit_elem_type(a.dtype, [&](auto type) {
    visit_flags(a.interleaved, a.stream_out, [&](auto interleaved, auto stream) {
      rotary_rows_typed<typename decltype(type)::type, decltype(interleaved)::value,
                        decltype(stream)::value>(a, row_begin, row_end);
    });
  });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
