// Cross-entropy kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// The math runs on 16-lane GCC/Clang vector types: each level lowers them to its own registers
// (4 SSE, 2 AVX2 or 1 AVX-512 register), while every lane keeps the same elements and every
// reduction the same order, so all levels and thread counts give bitwise the same results.
#include "cross_entropy_cpu_kernel.h"

// GCC warns that 64-byte vectors change the calling convention below AVX-512; the helpers are
// always inlined and internal, so no call crosses that boundary. Left off to the end of the
// (one-kernel) translation unit, where GCC reports it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"

#define LLMK_CE_INLINE inline __attribute__((always_inline))

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

// Columns per block: a block is converted to float32 scratch (L1) once, then swept by the
// max, exp and gradient loops; it is also the store unit of store_out.
constexpr int64_t kBlock = cpu::kMaxStoreBlock;
static_assert(kBlock % kLanes == 0, "blocks hold whole vectors");

LLMK_CE_INLINE vf vsplat(float a) { return vf{} + a; }
LLMK_CE_INLINE vf vload(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
LLMK_CE_INLINE void vstore(float* p, const vf& v) { __builtin_memcpy(p, &v, sizeof v); }
LLMK_CE_INLINE vf vselect(const vi& mask, const vf& a, const vf& b) { return mask ? a : b; }

// exp(x), float32, range reduction by ln 2 (Cody-Waite) and a degree-6 polynomial on
// [-ln2/2, ln2/2] (Cephes expf: ~1 ulp). x < -87.3 gives 0 (denormal results flushed), x > 88.3 is
// clamped (no inf from finite input); NaN stays NaN.
LLMK_CE_INLINE vf vexp(const vf& x) {
  const vf lo = vsplat(-87.3f), hi = vsplat(88.3f);
  const vi underflow = x < lo;
  vf xc = vselect(x < lo, lo, x);  // a NaN compares false: it passes through
  xc = vselect(xc > hi, hi, xc);
  const vf magic = vsplat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const vf fx = (xc * 1.44269504088896341f + magic) - magic;
  vf r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  vf p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = (p * (r * r) + r) + 1.0f;
  const vi k = __builtin_convertvector(fx, vi);  // in [-126, 128), or garbage for NaN (y is NaN)
  const vf scale = (vf)((k + 127) << 23);
  return vselect(underflow, vf{}, y * scale);
}

// tanh(x): odd polynomial below |x| = 0.625 (Cephes tanhf), 1 - 2 / (exp(2|x|) + 1) above,
// |x| >= 9 saturating to 1; sign restored by bits. NaN stays NaN.
LLMK_CE_INLINE vf vtanh(const vf& x) {
  const vi sign_mask = vi{} + static_cast<int32_t>(0x80000000u);
  const vi bits = (vi)x;
  const vf a = (vf)(bits & ~sign_mask);
  const vf s = a * a;
  vf ps = vsplat(-5.70498872745e-3f);
  ps = ps * s + 2.06390887954e-2f;
  ps = ps * s - 5.37397155531e-2f;
  ps = ps * s + 1.33314422036e-1f;
  ps = ps * s - 3.33332819422e-1f;
  const vf small = (ps * s) * a + a;
  const vf ac = vselect(a > 9.0f, vsplat(9.0f), a);
  const vf large = 1.0f - 2.0f / (vexp(ac + ac) + 1.0f);
  const vf t = vselect(a < 0.625f, small, large);
  return (vf)((vi)t | (bits & sign_mask));
}

// Lane reductions in one fixed (tree) order.
LLMK_CE_INLINE float hsum(const vf& v) {
  float t[kLanes];
  __builtin_memcpy(t, &v, sizeof v);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) t[j] = t[j] + t[j + w];
  return t[0];
}
LLMK_CE_INLINE float hmax(const vf& v) {
  float t[kLanes];
  __builtin_memcpy(t, &v, sizeof v);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) t[j] = t[j + w] > t[j] ? t[j + w] : t[j];
  return t[0];
}

LLMK_CE_INLINE void fill(float* p, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}

struct RowStats {
  float max;
  double sum_exp;       // sum_c exp(z_c - max)
  double weighted_sum;  // sum_c w_c z_c (only when asked)
};

// Loads columns [c0, c0 + n) of a row as float32 z (soft-capped when kCap) into zb, and the
// capped values also into zrow (the row scratch the gradient pass reads back).
template <typename T, bool kCap>
LLMK_CE_INLINE void load_block(const T* x, int64_t c0, int64_t n, float cap, float* zrow,
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
      vm = vselect(v > vm, v, vm);
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

template <typename T>
void rows_dispatch(const cpu::CrossEntropyRowsArgs& a, int64_t begin, int64_t end, float* scratch) {
  const bool cap = a.softcap > 0.0;
  const bool stream = a.stream_grad && a.grad != nullptr;
  if (cap) {
    if (stream) rows_typed<T, true, true>(a, begin, end, scratch);
    else rows_typed<T, true, false>(a, begin, end, scratch);
  } else {
    if (stream) rows_typed<T, false, true>(a, begin, end, scratch);
    else rows_typed<T, false, false>(a, begin, end, scratch);
  }
}

#undef LLMK_CE_INLINE

}  // namespace

void cross_entropy_rows(const cpu::CrossEntropyRowsArgs& a, int64_t row_begin, int64_t row_end,
                        float* scratch) {
  switch (a.dtype) {
    case cpu::ElemType::f32: rows_dispatch<float>(a, row_begin, row_end, scratch); break;
    case cpu::ElemType::f16: rows_dispatch<F16>(a, row_begin, row_end, scratch); break;
    case cpu::ElemType::bf16: rows_dispatch<Bf16>(a, row_begin, row_end, scratch); break;
  }
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
