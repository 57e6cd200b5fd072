// RMSNorm kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// One pass over memory per row each way: the forward reads x (and residual) once, keeps the row
// as float32 (in place for float32 rows without a residual, else in per-task scratch that stays
// in L1/L2), takes the sum of squares, then scales it into y; the backward reads inp and grad_y
// once into the same kind of scratch, takes sum(g * xhat), then writes dx and adds grad_y * xhat
// to its block's weight-gradient partial row. Outputs past a last-level cache (y, h, dx) are
// written with non-temporal stores: nothing reads them back soon. Every reduction runs in one
// fixed order (two 16-lane accumulators, then hsum), so all thread counts give bitwise the same
// results. Each operand has its own element type (a bf16 x beside a float32 residual and h, a
// bf16 y of a float32 h): rows are converted block by block, the type picked once per block, so
// mixed dtypes cost no cast pass of their own.
#include "rms_norm_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"

// Bytes per element of each cpu::ElemType (f32, f16, bf16).
constexpr int64_t kBytes[3] = {4, 2, 2};

// Columns per store step: outputs are computed into a float32 block, then converted and stored.
constexpr int64_t kBlock = cpu::kMaxStoreBlock;
static_assert(kBlock % kLanes == 0, "blocks hold whole vectors");

// Elements [c0, c0 + n) of a row of type t as float32: float32 memory is read where it lies,
// other types are converted into `scratch`.
LLMK_ALWAYS_INLINE const float* as_f32(cpu::ElemType t, const void* row, int64_t c0, float* scratch,
                                       int64_t n) {
  switch (t) {
    case cpu::ElemType::f16: load_f32(static_cast<const F16*>(row) + c0, scratch, n); return scratch;
    case cpu::ElemType::bf16: load_f32(static_cast<const Bf16*>(row) + c0, scratch, n); return scratch;
    default: return static_cast<const float*>(row) + c0;
  }
}

// Row r of a (rows, D) operand of type t with a row stride of `stride` elements.
LLMK_ALWAYS_INLINE const void* row_at(const void* base, cpu::ElemType t, int64_t r, int64_t stride) {
  return static_cast<const char*>(base) + r * stride * kBytes[static_cast<int>(t)];
}
LLMK_ALWAYS_INLINE void* row_at(void* base, cpu::ElemType t, int64_t r, int64_t stride) {
  return static_cast<char*>(base) + r * stride * kBytes[static_cast<int>(t)];
}

// Converts the float32 block src into elements [c0, c0 + n) of a row of type t (streamed when kStream).
template <bool kStream>
LLMK_ALWAYS_INLINE void store_as(cpu::ElemType t, const float* src, void* row, int64_t c0, int64_t n) {
  visit_elem_type(t, [&](auto type) {
    using T = typename decltype(type)::type;
    store_out<kStream>(src, static_cast<T*>(row) + c0, n);
  });
}

// Stores the float32 block hb into dst as T (streamed when kStream) and leaves in hb the stored,
// rounded values: y normalises the h the op returns. Rounded through an L1 buffer, never read
// back from dst (a streamed line would have to leave the write-combining buffers first).
template <bool kStream, typename T>
LLMK_ALWAYS_INLINE void store_rounded(float* hb, T* dst, int64_t n) {
  alignas(64) T stored[kBlock];
  store_f32(hb, stored, n);
  load_f32(stored, hb, n);
  if (kStream) stream_store_bytes(dst, stored, n * static_cast<int64_t>(sizeof(T)));
  else copy_elems(stored, dst, n);
}
template <bool kStream>
LLMK_ALWAYS_INLINE void store_rounded(float* hb, float* dst, int64_t n) {
  store_out<kStream>(hb, dst, n);
}
template <bool kStream>
LLMK_ALWAYS_INLINE void store_rounded_as(cpu::ElemType t, float* hb, void* row, int64_t c0, int64_t n) {
  visit_elem_type(t, [&](auto type) {
    using T = typename decltype(type)::type;
    store_rounded<kStream>(hb, static_cast<T*>(row) + c0, n);
  });
}

// Sum over i < n of f(i) for a generic f of (vector or scalar) loads, in a fixed order: two
// interleaved 16-lane accumulators (two chains of adds in flight), the tail added lane by lane.
template <typename VecTerm, typename ScalarTerm>
LLMK_ALWAYS_INLINE float fixed_order_sum(int64_t n, const VecTerm& vec_term,
                                         const ScalarTerm& scalar_term) {
  vf acc0 = vf{}, acc1 = vf{};
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    acc0 += vec_term(i);
    acc1 += vec_term(i + kLanes);
  }
  if (i + kLanes <= n) {
    acc0 += vec_term(i);
    i += kLanes;
  }
  for (int64_t j = 0; i + j < n; ++j) acc1[j] += scalar_term(i + j);
  return hsum(acc0 + acc1);
}

template <bool kResidual, bool kWeight, bool kStream>
void forward_rows(const RmsNormForwardParams& a, const cpu::RmsNormForwardTypes& t,
                  int64_t row_begin, int64_t row_end, float* scratch) {
  const int64_t D = a.dim;
  const float* w = a.weight;
  alignas(64) float block[kBlock];
  for (int64_t r = row_begin; r < row_end; ++r) {
    const void* x = row_at(a.x, t.x, r, a.x_stride);
    const float* hf;
    if (kResidual) {
      const void* res = row_at(a.residual, t.residual, r, a.residual_stride);
      void* h = row_at(a.h, t.h, r, a.h_stride);
      for (int64_t c0 = 0; c0 < D; c0 += kBlock) {
        const int64_t n = min_i64(kBlock, D - c0);
        const float* xb = as_f32(t.x, x, c0, scratch + c0, n);
        const float* rb = as_f32(t.residual, res, c0, block, n);
        float* hb = scratch + c0;
        int64_t i = 0;
        for (; i + kLanes <= n; i += kLanes) vstore(hb + i, vload(xb + i) + vload(rb + i));
        for (; i < n; ++i) hb[i] = xb[i] + rb[i];
        store_rounded_as<kStream>(t.h, hb, h, c0, n);
      }
      hf = scratch;
    } else {
      hf = as_f32(t.x, x, 0, scratch, D);
    }
    const float ss = fixed_order_sum(
        D, [&](int64_t i) { const vf v = vload(hf + i); return v * v; },
        [&](int64_t i) { return hf[i] * hf[i]; });
    const float rstd = 1.0f / __builtin_sqrtf(ss / static_cast<float>(D) + a.eps);
    a.rstd[r] = rstd;
    void* y = row_at(a.y, t.y, r, a.y_stride);
    for (int64_t c0 = 0; c0 < D; c0 += kBlock) {
      const int64_t n = min_i64(kBlock, D - c0);
      const float* hb = hf + c0;
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes) {
        const vf v = vload(hb + i) * rstd;
        vstore(block + i, kWeight ? v * vload(w + c0 + i) : v);
      }
      for (; i < n; ++i) block[i] = kWeight ? hb[i] * rstd * w[c0 + i] : hb[i] * rstd;
      store_as<kStream>(t.y, block, y, c0, n);
    }
  }
  if (kStream) stream_fence();
}

template <bool kGradH, bool kWeight, bool kPartial, bool kStream>
void backward_blocks(const RmsNormBackwardParams& a, const cpu::RmsNormBackwardTypes& t,
                     int64_t block_begin, int64_t block_end, float* scratch) {
  const int64_t D = a.dim;
  const float* w = a.weight;
  float* hbuf = scratch;
  float* gbuf = scratch + (D + kLanes - 1) / kLanes * kLanes;
  alignas(64) float block[kBlock];
  alignas(64) float ghbuf[kBlock];
  const float inv_dim = 1.0f / static_cast<float>(D);
  for (int64_t b = block_begin; b < block_end; ++b) {
    float* part = kPartial ? a.partial + b * D : nullptr;
    if (kPartial) fill(part, D, 0.0f);
    const int64_t r_end = min_i64(a.rows, (b + 1) * a.block_rows);
    for (int64_t r = b * a.block_rows; r < r_end; ++r) {
      const float* hf = as_f32(t.inp, row_at(a.inp, t.inp, r, a.inp_stride), 0, hbuf, D);
      const float* dy = as_f32(t.grad_y, row_at(a.grad_y, t.grad_y, r, a.grad_y_stride), 0, gbuf, D);
      const float rstd = a.rstd[r];
      // mean(g * xhat) with g = dy * w and xhat = h * rstd, as the reference orders the products.
      const float dot = fixed_order_sum(
          D,
          [&](int64_t i) {
            const vf g = kWeight ? vload(dy + i) * vload(w + i) : vload(dy + i);
            return g * (vload(hf + i) * rstd);
          },
          [&](int64_t i) { return (kWeight ? dy[i] * w[i] : dy[i]) * (hf[i] * rstd); });
      const float c = dot * inv_dim;
      const void* gh = kGradH ? row_at(a.grad_h, t.grad_h, r, a.grad_h_stride) : nullptr;
      void* dx = row_at(a.dx, t.dx, r, a.dx_stride);
      void* dres = a.dresidual != nullptr ? row_at(a.dresidual, t.dresidual, r, a.dresidual_stride)
                                          : nullptr;
      for (int64_t c0 = 0; c0 < D; c0 += kBlock) {
        const int64_t n = min_i64(kBlock, D - c0);
        const float* ghb = kGradH ? as_f32(t.grad_h, gh, c0, ghbuf, n) : nullptr;
        const float* hb = hf + c0;
        const float* db = dy + c0;
        const float* wb = kWeight ? w + c0 : nullptr;
        float* pb = kPartial ? part + c0 : nullptr;
        int64_t i = 0;
        for (; i + kLanes <= n; i += kLanes) {
          const vf xhat = vload(hb + i) * rstd;
          const vf d = vload(db + i);
          const vf g = kWeight ? d * vload(wb + i) : d;
          vf v = (g - xhat * c) * rstd;
          if (kGradH) v = v + vload(ghb + i);
          vstore(block + i, v);
          if (kPartial) vstore(pb + i, vload(pb + i) + d * xhat);
        }
        for (; i < n; ++i) {
          const float xhat = hb[i] * rstd;
          const float g = kWeight ? db[i] * wb[i] : db[i];
          float v = (g - xhat * c) * rstd;
          if (kGradH) v = v + ghb[i];
          block[i] = v;
          if (kPartial) pb[i] = pb[i] + db[i] * xhat;
        }
        store_as<kStream>(t.dx, block, dx, c0, n);
        if (dres != nullptr) store_as<kStream>(t.dresidual, block, dres, c0, n);
      }
    }
  }
  if (kStream) stream_fence();
}

// Four flags -> template arguments (visit_flags takes two).
template <typename F>
LLMK_ALWAYS_INLINE void visit_four_flags(bool a, bool b, bool c, bool d, const F& f) {
  visit_flags(a, b, [&](auto ta, auto tb) {
    visit_flags(c, d, [&](auto tc, auto td) { f(ta, tb, tc, td); });
  });
}

// Outputs are streamed when the largest of them is about a last-level cache or more.
LLMK_ALWAYS_INLINE bool streamed(int64_t rows, int64_t dim, cpu::ElemType a, cpu::ElemType b) {
  const int64_t bytes = kBytes[static_cast<int>(a)] > kBytes[static_cast<int>(b)]
                            ? kBytes[static_cast<int>(a)] : kBytes[static_cast<int>(b)];
  return rows * dim * bytes >= cpu::kStreamingMinBytes;
}

}  // namespace

void rms_norm_forward_rows(const RmsNormForwardParams& a, const cpu::RmsNormForwardTypes& t,
                           int64_t row_begin, int64_t row_end, float* scratch) {
  const bool stream = streamed(a.rows, a.dim, t.y, a.h != nullptr ? t.h : t.y);
  visit_four_flags(a.residual != nullptr, a.weight != nullptr, stream, false,
                   [&](auto residual, auto weight, auto streamed_out, auto) {
                     forward_rows<decltype(residual)::value, decltype(weight)::value,
                                  decltype(streamed_out)::value>(a, t, row_begin, row_end, scratch);
                   });
}

void rms_norm_backward_blocks(const RmsNormBackwardParams& a, const cpu::RmsNormBackwardTypes& t,
                              int64_t block_begin, int64_t block_end, float* scratch) {
  const bool stream = streamed(a.rows, a.dim, t.dx, a.dresidual != nullptr ? t.dresidual : t.dx);
  visit_four_flags(a.grad_h != nullptr, a.weight != nullptr, a.partial != nullptr, stream,
                   [&](auto grad_h, auto weight, auto partial, auto streamed_out) {
                     backward_blocks<decltype(grad_h)::value, decltype(weight)::value,
                                     decltype(partial)::value, decltype(streamed_out)::value>(
                         a, t, block_begin, block_end, scratch);
                   });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
