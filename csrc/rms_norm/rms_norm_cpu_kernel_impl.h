// RMSNorm kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// Each row is two passes over its elements, 16 lanes at a time, every operand converted in
// registers (cpu_vec_convert_impl.h): the forward's first pass reads x (and residual), stores h
// and keeps it as float32 in per-task scratch (L1) while it sums the squares; the second scales
// it into y. The backward's first pass reads inp and grad_y (keeping float32 copies of the
// narrow ones) and sums g * xhat; the second writes dx (and dresidual) and adds grad_y * xhat to
// its block's weight-gradient partial row. Each pass is a small function instantiated per
// element type of the operands it touches and picked once per call through a pointer: a row of a
// few hundred elements pays one indirect call per pass, where converting through scratch blocks
// with a type switch per block (this kernel's earlier form) cost more than the arithmetic.
//
// Every sum runs in one fixed order (two interleaved 16-lane accumulators, a ragged last vector
// into the second, then hsum) with plain expressions: all ISA levels and thread counts give
// bitwise the same results. Outputs past a last-level cache are staged row by row in scratch and
// written with non-temporal stores: nothing reads them back soon.
#include "rms_norm_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"
#include "../common/cpu_vec_convert_impl.h"

// Bytes per element of each cpu::ElemType (f32, f16, bf16).
constexpr int64_t kBytes[3] = {4, 2, 2};

// A float32 row is read where it lies; a narrower one is kept as float32 in scratch by the pass
// that first reads it. (float is the only 4-byte storage type: F16 and Bf16 hold 2.)
template <typename T>
constexpr bool kIsF32 = sizeof(T) == sizeof(float);

// The absent output of a pass (no dresidual): its stores vanish.
struct NoOut {};
template <typename Lanes>
LLMK_ALWAYS_INLINE void put(const Lanes&, NoOut*, int64_t, const vf&) {}
template <typename Lanes, typename T>
LLMK_ALWAYS_INLINE void put(const Lanes& lanes, T* row, int64_t i, const vf& v) {
  lanes.store(row + i, v);
}

// Row r of a (rows, D) operand of type t with a row stride of `stride` elements.
LLMK_ALWAYS_INLINE const void* row_at(const void* base, cpu::ElemType t, int64_t r, int64_t stride) {
  return static_cast<const char*>(base) + r * stride * kBytes[static_cast<int>(t)];
}
LLMK_ALWAYS_INLINE void* row_at(void* base, cpu::ElemType t, int64_t r, int64_t stride) {
  return static_cast<char*>(base) + r * stride * kBytes[static_cast<int>(t)];
}

// The sum over the vectors of columns [0, n) of the terms that term(i, lanes, acc) adds to acc
// (it also does the vector's loads and stores; the accumulator goes by reference, so a call the
// compiler keeps out of line passes no 64-byte vector by value): two interleaved accumulators
// (two chains of adds in flight), a last whole vector into the first, the ragged rest (its
// padding lanes contribute 0) into the second.
template <typename Term>
LLMK_ALWAYS_INLINE float fixed_order_row_sum(int64_t n, const Term& term) {
  vf acc0 = vf{}, acc1 = vf{};
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    term(i, WholeLanes{}, acc0);
    term(i + kLanes, WholeLanes{}, acc1);
  }
  if (i + kLanes <= n) {
    term(i, WholeLanes{}, acc0);
    i += kLanes;
  }
  if (i < n) term(i, PartLanes{n - i}, acc1);
  return hsum(acc0 + acc1);
}

// --- forward passes -----------------------------------------------------------------------

// h = x + residual stored in TH; its stored (rounded) values, which y normalises, go to hf.
// Returns their sum of squares.
template <typename TX, typename TR, typename TH>
float add_residual_row(const void* xv, const void* rv, void* hv, float* hf, int64_t dim) {
  const TX* x = static_cast<const TX*>(xv);
  const TR* res = static_cast<const TR*>(rv);
  TH* h = static_cast<TH*>(hv);
  return fixed_order_row_sum(dim, [&](int64_t i, auto lanes, vf& acc) {
    lanes.store(h + i, lanes.load(x + i) + lanes.load(res + i));
    const vf v = lanes.load(h + i);  // as stored (rounded to TH)
    vstore(hf + i, v);
    acc += v * v;
  });
}

// No residual: the sum of squares of x, kept as float32 in hf unless it is float32 already.
template <typename TX>
float square_row(const void* xv, const void*, void*, float* hf, int64_t dim) {
  const TX* x = static_cast<const TX*>(xv);
  return fixed_order_row_sum(dim, [&](int64_t i, auto lanes, vf& acc) {
    const vf v = lanes.load(x + i);
    if (!kIsF32<TX>) vstore(hf + i, v);
    acc += v * v;
  });
}

// y = h * rstd * weight, rounded once into TY.
template <typename TY>
void scale_row(const float* hf, const float* w, float rstd, void* yv, int64_t dim) {
  TY* y = static_cast<TY*>(yv);
  each_vector(dim, [&](int64_t i, auto lanes) {
    lanes.store(y + i, lanes.load(hf + i) * rstd * lanes.load(w + i));
  });
}

using FirstFwdFn = float (*)(const void*, const void*, void*, float*, int64_t);
using ScaleFn = void (*)(const float*, const float*, float, void*, int64_t);

FirstFwdFn first_forward_pass(const cpu::RmsNormForwardTypes& t, bool residual) {
  FirstFwdFn f = nullptr;
  visit_elem_type(t.x, [&](auto x) {
    using TX = typename decltype(x)::type;
    if (!residual) {
      f = &square_row<TX>;
      return;
    }
    visit_elem_type(t.residual, [&](auto r) {
      visit_elem_type(t.h, [&](auto h) {
        f = &add_residual_row<TX, typename decltype(r)::type, typename decltype(h)::type>;
      });
    });
  });
  return f;
}

ScaleFn scale_pass(cpu::ElemType y) {
  ScaleFn f = nullptr;
  visit_elem_type(y, [&](auto t) { f = &scale_row<typename decltype(t)::type>; });
  return f;
}

// --- backward passes ----------------------------------------------------------------------

// sum(g * xhat) with g = grad_y * w and xhat = inp * rstd, as the reference orders the products;
// narrow inp and grad_y rows are kept as float32 in hbuf and gbuf for the second pass.
template <typename TI, typename TG>
float dot_row(const void* inpv, const void* gyv, const float* w, float rstd, float* hbuf,
              float* gbuf, int64_t dim) {
  const TI* inp = static_cast<const TI*>(inpv);
  const TG* gy = static_cast<const TG*>(gyv);
  return fixed_order_row_sum(dim, [&](int64_t i, auto lanes, vf& acc) {
    const vf hv = lanes.load(inp + i);
    const vf d = lanes.load(gy + i);
    if (!kIsF32<TI>) vstore(hbuf + i, hv);
    if (!kIsF32<TG>) vstore(gbuf + i, d);
    acc += (d * lanes.load(w + i)) * (hv * rstd);
  });
}

// The float32 rows the second backward pass reads.
struct BackwardRow {
  const float* h;
  const float* dy;
  const float* grad_h;  // null: none
  float* partial;       // null: no weight gradient
};

// dx = (g - xhat * c) * rstd (+ grad_h), written as TD (and as TR into dresidual); the block's
// weight-gradient partial row gains grad_y * xhat.
template <typename TD, typename TR, bool kGradH, bool kPartial>
void dx_row(const BackwardRow& row, const float* w, float rstd, float c, void* dxv, void* dresv,
            int64_t dim) {
  TD* dx = static_cast<TD*>(dxv);
  TR* dres = static_cast<TR*>(dresv);
  each_vector(dim, [&](int64_t i, auto lanes) {
    const vf xhat = lanes.load(row.h + i) * rstd;
    const vf d = lanes.load(row.dy + i);
    vf v = (d * lanes.load(w + i) - xhat * c) * rstd;
    if (kGradH) v = v + lanes.load(row.grad_h + i);
    lanes.store(dx + i, v);
    put(lanes, dres, i, v);
    if (kPartial) lanes.store(row.partial + i, lanes.load(row.partial + i) + d * xhat);
  });
}

using DotFn = float (*)(const void*, const void*, const float*, float, float*, float*, int64_t);
using DxFn = void (*)(const BackwardRow&, const float*, float, float, void*, void*, int64_t);

DotFn dot_pass(const cpu::RmsNormBackwardTypes& t) {
  DotFn f = nullptr;
  visit_elem_type(t.inp, [&](auto i) {
    visit_elem_type(t.grad_y, [&](auto g) {
      f = &dot_row<typename decltype(i)::type, typename decltype(g)::type>;
    });
  });
  return f;
}

DxFn dx_pass(const cpu::RmsNormBackwardTypes& t, bool dresidual, bool grad_h, bool partial) {
  DxFn f = nullptr;
  visit_elem_type(t.dx, [&](auto d) {
    using TD = typename decltype(d)::type;
    visit_flags(grad_h, partial, [&](auto gh, auto part) {
      constexpr bool kGh = decltype(gh)::value, kPart = decltype(part)::value;
      if (!dresidual) {
        f = &dx_row<TD, NoOut, kGh, kPart>;
        return;
      }
      visit_elem_type(t.dresidual, [&](auto r) {
        f = &dx_row<TD, typename decltype(r)::type, kGh, kPart>;
      });
    });
  });
  return f;
}

// A narrow grad_h row as float32 (grad_h has h's dtype: float32 under autocast, read in place).
LLMK_ALWAYS_INLINE const float* grad_h_as_f32(cpu::ElemType t, const void* row, float* buf,
                                              int64_t dim) {
  if (t == cpu::ElemType::f32) return static_cast<const float*>(row);
  visit_elem_type(t, [&](auto type) {
    const auto* src = static_cast<const typename decltype(type)::type*>(row);
    each_vector(dim, [&](int64_t i, auto lanes) { vstore(buf + i, lanes.load(src + i)); });
  });
  return buf;
}

// Outputs are streamed when the largest of them is about a last-level cache or more.
LLMK_ALWAYS_INLINE bool streamed(int64_t rows, int64_t dim, cpu::ElemType a, cpu::ElemType b) {
  const int64_t bytes = kBytes[static_cast<int>(a)] > kBytes[static_cast<int>(b)]
                            ? kBytes[static_cast<int>(a)] : kBytes[static_cast<int>(b)];
  return rows * dim * bytes >= cpu::kStreamingMinBytes;
}

// A row computed into an L1 stage (when streamed) is written out past the caches.
LLMK_ALWAYS_INLINE void flush_stage(bool stream, void* dst, const void* stage, cpu::ElemType t,
                                    int64_t dim) {
  if (stream) stream_store_bytes(dst, stage, dim * kBytes[static_cast<int>(t)]);
}

}  // namespace

void rms_norm_forward_rows(const RmsNormForwardParams& a, const cpu::RmsNormForwardTypes& t,
                           int64_t row_begin, int64_t row_end, float* scratch) {
  const int64_t D = a.dim;
  const bool residual = a.residual != nullptr;
  const bool stream = streamed(a.rows, D, t.y, residual ? t.h : t.y);
  float* hbuf = scratch;
  float* stage = scratch + (D + kLanes - 1) / kLanes * kLanes;
  const FirstFwdFn first = first_forward_pass(t, residual);
  const ScaleFn scale = scale_pass(t.y);
  const bool x_in_place = !residual && t.x == cpu::ElemType::f32;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const void* x = row_at(a.x, t.x, r, a.x_stride);
    const void* res = residual ? row_at(a.residual, t.residual, r, a.residual_stride) : nullptr;
    void* h = residual ? row_at(a.h, t.h, r, a.h_stride) : nullptr;
    const float ss = first(x, res, stream ? stage : h, hbuf, D);
    if (residual) flush_stage(stream, h, stage, t.h, D);
    const float rstd = 1.0f / __builtin_sqrtf(ss / static_cast<float>(D) + a.eps);
    a.rstd[r] = rstd;
    void* y = row_at(a.y, t.y, r, a.y_stride);
    scale(x_in_place ? static_cast<const float*>(x) : hbuf, a.weight, rstd, stream ? stage : y, D);
    flush_stage(stream, y, stage, t.y, D);
  }
  if (stream) stream_fence();
}

void rms_norm_backward_blocks(const RmsNormBackwardParams& a, const cpu::RmsNormBackwardTypes& t,
                              int64_t block_begin, int64_t block_end, float* scratch) {
  const int64_t D = a.dim, padded = (D + kLanes - 1) / kLanes * kLanes;
  const bool has_dres = a.dresidual != nullptr;
  const bool stream = streamed(a.rows, D, t.dx, has_dres ? t.dresidual : t.dx);
  float* hbuf = scratch;
  float* gbuf = scratch + padded;
  float* ghbuf = scratch + 2 * padded;
  float* dx_stage = scratch + 3 * padded;
  float* dres_stage = scratch + 4 * padded;
  const DotFn dot = dot_pass(t);
  const DxFn dx_of = dx_pass(t, has_dres, a.grad_h != nullptr, a.partial != nullptr);
  const float inv_dim = 1.0f / static_cast<float>(D);
  for (int64_t b = block_begin; b < block_end; ++b) {
    BackwardRow row{};
    row.partial = a.partial != nullptr ? a.partial + b * D : nullptr;
    if (row.partial != nullptr) fill(row.partial, D, 0.0f);
    const int64_t r_end = min_i64(a.rows, (b + 1) * a.block_rows);
    for (int64_t r = b * a.block_rows; r < r_end; ++r) {
      const void* inp = row_at(a.inp, t.inp, r, a.inp_stride);
      const void* gy = row_at(a.grad_y, t.grad_y, r, a.grad_y_stride);
      const float rstd = a.rstd[r];
      const float c = dot(inp, gy, a.weight, rstd, hbuf, gbuf, D) * inv_dim;
      row.h = t.inp == cpu::ElemType::f32 ? static_cast<const float*>(inp) : hbuf;
      row.dy = t.grad_y == cpu::ElemType::f32 ? static_cast<const float*>(gy) : gbuf;
      if (a.grad_h != nullptr)
        row.grad_h = grad_h_as_f32(t.grad_h, row_at(a.grad_h, t.grad_h, r, a.grad_h_stride), ghbuf, D);
      void* dx = row_at(a.dx, t.dx, r, a.dx_stride);
      void* dres = has_dres ? row_at(a.dresidual, t.dresidual, r, a.dresidual_stride) : nullptr;
      dx_of(row, a.weight, rstd, c, stream ? dx_stage : dx, stream ? dres_stage : dres, D);
      flush_stage(stream, dx, dx_stage, t.dx, D);
      if (has_dres) flush_stage(stream, dres, dres_stage, t.dresidual, D);
    }
  }
  if (stream) stream_fence();
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
