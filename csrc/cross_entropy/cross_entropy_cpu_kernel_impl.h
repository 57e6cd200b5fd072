// Cross-entropy kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// Built on the vector library (common/cpu_vec_impl.h): every reduction runs in one fixed order,
// so all levels and thread counts give bitwise the same results.
#include "cross_entropy_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"

// Columns per block: a block is converted to float32 scratch (L1) once, then swept by the
// max, exp and gradient loops; it is also the store unit of store_out.
constexpr int64_t kBlock = cpu::kMaxStoreBlock;
static_assert(kBlock % kLanes == 0, "blocks hold whole vectors");

struct RowStats {
  float max;
  double sum_exp;       // sum_c exp(z_c - max)
  double weighted_sum;  // sum_c w_c z_c (only when asked)
};

// Loads columns [c0, c0 + n) of a row as float32 z (soft-capped when kCap) into zb, and the
// capped values also into zrow (the row scratch the gradient pass reads back).
template <typename T, bool kCap>
LLMK_ALWAYS_INLINE void load_block(const T* x, int64_t c0, int64_t n, float cap, float* zrow,
                                   float* zb) {
  const int64_t nv = (n + kLanes - 1) / kLanes * kLanes;
  if (kCap) {
    load_f32(x + c0, zb, n);
    fill(zb + n, nv - n, 0.0f);
    for (int64_t i = 0; i < nv; i += kLanes) {
      const vf v = vload(zb + i);
      vstore(zb + i, vtanh(v / cap) * cap);
    }
    for (int64_t i = 0; i < n; ++i) zrow[c0 + i] = zb[i];
  } else {
    load_f32(x + c0, zb, n);
  }
}

// Pass 1: max, sum of exp (online, rescaled once per block when the max grows) and, for label
// smoothing, sum_c w_c z_c. Block sums are float32 over 16 lanes, accumulated across blocks in
// float64. With kKeep (a gradient follows) each e_c = exp(z_c - m_b) goes to erow and the running
// max m_b it was taken against to block_max, so the gradient pass needs no second exp.
template <typename T, bool kCap, bool kKeep>
RowStats row_stats(const T* x, int64_t C, float cap, float* zrow, float* erow, float* block_max,
                   const float* weight, bool want_weighted) {
  alignas(64) float zb[kBlock];
  const float neg_inf = -__builtin_inff();
  float m = neg_inf;
  double s = 0.0, swz = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = min_i64(kBlock, C - c0);
    const int64_t nfull = n / kLanes * kLanes;
    const int64_t nv = (n + kLanes - 1) / kLanes * kLanes;
    load_block<T, kCap>(x, c0, n, cap, zrow, zb);
    if (want_weighted) {
      vf acc = vf{};
      if (weight) {
        for (int64_t i = 0; i < nfull; i += kLanes) acc += vload(weight + c0 + i) * vload(zb + i);
        for (int64_t i = nfull; i < n; ++i) acc[i - nfull] += weight[c0 + i] * zb[i];
      } else {
        for (int64_t i = 0; i < nfull; i += kLanes) acc += vload(zb + i);
        for (int64_t i = nfull; i < n; ++i) acc[i - nfull] += zb[i];
      }
      swz += static_cast<double>(hsum(acc));
    }
    fill(zb + n, nv - n, neg_inf);
    vf vm = vsplat(neg_inf);
    for (int64_t i = 0; i < nv; i += kLanes) {
      const vf v = vload(zb + i);
      vm = vselect(vgt(v, vm), v, vm);
    }
    const float bm = hmax(vm);
    if (bm > m) {
      if (m != neg_inf) s *= __builtin_exp(static_cast<double>(m) - static_cast<double>(bm));
      m = bm;
    }
    if (kKeep) block_max[c0 / kBlock] = m;
    if (m == neg_inf) {  // every value so far is -inf (or NaN): nothing to add
      if (kKeep) fill(erow + c0, nv, 0.0f);
      continue;
    }
    vf acc = vf{};
    for (int64_t i = 0; i < nv; i += kLanes) {
      const vf e = vexp(vload(zb + i) - m);
      if (kKeep) vstore(erow + c0 + i, e);
      acc += e;
    }
    s += static_cast<double>(hsum(acc));
    if (bm != bm) m = bm;  // a NaN logit: propagate it to lse and the loss
  }
  return RowStats{m, s, swz};
}

// Pass 2: grad_c = ((p_c * a - w_c * b) - [c == t] * d) * (1 - (z_c / cap)^2 when capped), with
// p_c * a = e_c * (exp(m_b - lse) * a), the factor taken in float64 once per block: exact near
// the max even for large logits, where z_c - lse in float32 would carry lse's rounding error.
template <typename T, bool kCap, bool kStream>
void row_grad(T* g, int64_t C, float cap, const float* zrow, const float* erow,
              const float* block_max, const float* weight, double lse, double a, float b, float d,
              int64_t t) {
  alignas(64) float gb[kBlock];
  alignas(64) float wb[kBlock];
  float last_max = 0.0f, pa = static_cast<float>(__builtin_exp(-lse) * a);
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = min_i64(kBlock, C - c0);
    const int64_t nv = (n + kLanes - 1) / kLanes * kLanes;
    const float mb = block_max[c0 / kBlock];
    if (mb != last_max) {
      pa = static_cast<float>(__builtin_exp(static_cast<double>(mb) - lse) * a);
      last_max = mb;
    }
    const float* wp = nullptr;
    if (weight && b != 0.0f) {
      if (n == nv) {
        wp = weight + c0;
      } else {
        for (int64_t i = 0; i < n; ++i) wb[i] = weight[c0 + i];
        fill(wb + n, nv - n, 0.0f);
        wp = wb;
      }
    }
    const int64_t tt = t - c0;  // target column within the block (may be outside)
    for (int64_t i = 0; i < nv; i += kLanes) {
      vf gv = vload(erow + c0 + i) * pa;
      if (wp) gv = gv - vload(wp + i) * b;
      else gv = gv - b;
      if (tt >= i && tt < i + kLanes) gv[tt - i] -= d;
      if (kCap) {
        const vf zc = vload(zrow + c0 + i) / cap;
        gv = gv * (1.0f - zc * zc);
      }
      vstore(gb + i, gv);
    }
    store_out<kStream>(gb, g + c0, n);
  }
}

template <typename T, bool kStream>
void zero_row(T* g, int64_t C) {
  alignas(64) float zeros[kBlock];
  fill(zeros, kBlock, 0.0f);
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) store_out<kStream>(zeros, g + c0, min_i64(kBlock, C - c0));
}

template <typename T, bool kCap, bool kStream>
void rows_typed(const cpu::CrossEntropyRowsArgs& a, int64_t row_begin, int64_t row_end,
                float* scratch) {
  const int64_t C = a.num_classes;
  const float cap = static_cast<float>(a.softcap);
  const double eps = a.label_smoothing;
  const double eps_c = eps / static_cast<double>(C);
  const bool smoothing = eps != 0.0;
  const T* logits = static_cast<const T*>(a.logits);
  T* grad = static_cast<T*>(a.grad);
  // Scratch layout (see cross_entropy_cpu_kernel.h): [erow][zrow][block_max].
  const int64_t row_floats = (C + kLanes - 1) / kLanes * kLanes;
  float* erow = grad ? scratch : nullptr;
  float* zrow = kCap ? scratch + (grad ? row_floats : 0) : nullptr;
  float* block_max = scratch + (grad ? row_floats : 0) + (kCap ? row_floats : 0);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* x = logits + r * a.logits_stride;
    const int64_t t = a.target[r];
    const bool ignored = t == a.ignore_index;
    const bool keep = grad && !ignored;
    const bool weighted = smoothing && !ignored;
    const RowStats st =
        keep ? row_stats<T, kCap, true>(x, C, cap, zrow, erow, block_max, a.class_weight, weighted)
             : row_stats<T, kCap, false>(x, C, cap, zrow, erow, block_max, a.class_weight, weighted);
    const double lse = static_cast<double>(st.max) + __builtin_log(st.sum_exp);
    a.lse[r] = static_cast<float>(lse);
    if (ignored) {
      a.loss_rows[r] = 0.0f;
      if (grad) zero_row<T, kStream>(grad + r * C, C);
      continue;
    }
    float zt;
    if (kCap) {
      zt = zrow[t];
    } else {
      load_f32(x + t, &zt, 1);
    }
    const double wt = a.class_weight ? static_cast<double>(a.class_weight[t]) : 1.0;
    double loss = (1.0 - eps) * wt * (lse - static_cast<double>(zt)) + a.z_loss * lse * lse;
    if (smoothing) loss += eps_c * (a.weight_sum * lse - st.weighted_sum);
    a.loss_rows[r] = static_cast<float>(loss);
    if (grad) {
      const double ca = a.ce_scale * ((1.0 - eps) * wt + eps_c * a.weight_sum) +
                        a.z_scale * 2.0 * a.z_loss * lse;
      const float cb = static_cast<float>(a.ce_scale * eps_c);
      const float cd = static_cast<float>(a.ce_scale * (1.0 - eps) * wt);
      row_grad<T, kCap, kStream>(grad + r * C, C, cap, zrow, erow, block_max, a.class_weight, lse,
                                 ca, cb, cd, t);
    }
  }
  if (kStream) stream_fence();
}

}  // namespace

void cross_entropy_rows(const cpu::CrossEntropyRowsArgs& a, int64_t row_begin, int64_t row_end,
                        float* scratch) {
  visit_elem_type(a.dtype, [&](auto type) {
    using T = typename decltype(type)::type;
    visit_flags(a.softcap > 0.0, a.stream_grad && a.grad != nullptr, [&](auto cap, auto stream) {
      rows_typed<T, decltype(cap)::value, decltype(stream)::value>(a, row_begin, row_end, scratch);
    });
  });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
