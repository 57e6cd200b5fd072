// Flash-attention kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// Tiles keep the query index in the vector lanes: the scores of a (query block, key block) pair
// are S^T (keys x queries), the forward accumulator is O^T (head_dim x queries), and every tile
// product is C (+)= A * B with A read one scalar at a time (broadcast) and B, C row-major with 16
// lanes per vector. The online softmax is then element-wise across rows (no lane shuffles).
// Products use explicit FMA (isa_begin.h turns contraction off for the plain expressions);
// results are deterministic per ISA level and independent of the thread count.
#include "attention_cpu_kernel.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"

#define LLMK_AT_INLINE inline __attribute__((always_inline))

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(kLanes * sizeof(uint32_t))));

constexpr int64_t kBQ = cpu::kAttnBlockQ;
constexpr int64_t kBK = cpu::kAttnBlockK;

// Register blocking of the micro-kernel: kMR rows of A x kNV vectors of B.
#if LLMK_ISA_LEVEL >= 2
constexpr int kMR = 4;
constexpr int kNV = 4;
#elif LLMK_ISA_LEVEL == 1
constexpr int kMR = 2;
constexpr int kNV = 2;
#else
constexpr int kMR = 2;
constexpr int kNV = 1;
#endif

LLMK_AT_INLINE vf vsplat(float a) { return vf{} + a; }
LLMK_AT_INLINE vf vload(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
LLMK_AT_INLINE void vstore(float* p, const vf& v) { __builtin_memcpy(p, &v, sizeof v); }
LLMK_AT_INLINE vf vselect(const vi& mask, const vf& a, const vf& b) { return mask ? a : b; }
LLMK_AT_INLINE vf vmax(const vf& a, const vf& b) { return a > b ? a : b; }

// a * b + c with one rounding where the level has FMA.
LLMK_AT_INLINE vf vfma(const vf& a, const vf& b, const vf& c) {
#if LLMK_ISA_LEVEL >= 2
  return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif LLMK_ISA_LEVEL == 1
  __m256 ah[2], bh[2], ch[2];
  __builtin_memcpy(ah, &a, sizeof a);
  __builtin_memcpy(bh, &b, sizeof b);
  __builtin_memcpy(ch, &c, sizeof c);
  ch[0] = _mm256_fmadd_ps(ah[0], bh[0], ch[0]);
  ch[1] = _mm256_fmadd_ps(ah[1], bh[1], ch[1]);
  vf r;
  __builtin_memcpy(&r, ch, sizeof r);
  return r;
#else
  return a * b + c;
#endif
}

// exp(x), float32 (Cephes expf polynomial, ~1 ulp); x < -87.3 (and -inf) gives 0.
LLMK_AT_INLINE vf vexp(const vf& x) {
  const vf lo = vsplat(-87.3f), hi = vsplat(88.3f);
  const vi underflow = x < lo;
  vf xc = vselect(x < lo, lo, x);
  xc = vselect(xc > hi, hi, xc);
  const vf magic = vsplat(12582912.0f);
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
  const vi k = __builtin_convertvector(fx, vi);
  const vf scale = (vf)((k + 127) << 23);
  return vselect(underflow, vf{}, y * scale);
}

// tanh(x): Cephes odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above.
LLMK_AT_INLINE vf vtanh(const vf& x) {
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

LLMK_AT_INLINE vf vabs(const vf& x) {
  return (vf)((vi)x & (vi{} + 0x7FFFFFFF));
}

LLMK_AT_INLINE int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
LLMK_AT_INLINE int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

inline void fill(float* p, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}

template <typename T>
struct IsF32 {
  static constexpr bool value = false;
};
template <>
struct IsF32<float> {
  static constexpr bool value = true;
};

// ---------------------------------------------------------------------------------------------
// C[M x N] (+)= A[M x K] * B[K x N], A(r, k) = A[r * sr + k * sk], B and C row-major (ldb, ldc),
// N a multiple of 16.

// With TA = uint32_t (avx512bf16 level only) A and B hold bf16 pairs along K (VNNI layout: each
// 32-bit B lane is (B[2k][n], B[2k+1][n])), K counts pairs and the product is vdpbf16ps.
template <typename TA, int R, int NV, bool kAcc>
LLMK_AT_INLINE void micro(const TA* A, int64_t sr, int64_t sk, const TA* B, int64_t ldb,
                          float* C, int64_t ldc, int64_t K) {
  vf acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = kAcc ? vload(C + r * ldc + v * kLanes) : vf{};
  const TA* a_rows[R];
  for (int r = 0; r < R; ++r) a_rows[r] = A + r * sr;
  for (int64_t k = 0; k < K; ++k) {
    const TA* b = B + k * ldb;
    const int64_t ko = k * sk;
    if constexpr (IsF32<TA>::value) {
      vf bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = vload(b + v * kLanes);
      for (int r = 0; r < R; ++r) {
        const vf av = vsplat(a_rows[r][ko]);
        for (int v = 0; v < NV; ++v) acc[r][v] = vfma(av, bv[v], acc[r][v]);
      }
    } else {
#if LLMK_ISA_LEVEL >= 3
      __m512i bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + v * kLanes);
      for (int r = 0; r < R; ++r) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(a_rows[r][ko]));
        for (int v = 0; v < NV; ++v)
          acc[r][v] = (vf)_mm512_dpbf16_ps((__m512)acc[r][v], (__m512bh)av, (__m512bh)bv[v]);
      }
#endif
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) vstore(C + r * ldc + v * kLanes, acc[r][v]);
}

template <typename TA, int NV, bool kAcc>
LLMK_AT_INLINE void micro_rows(int64_t rows, const TA* A, int64_t sr, int64_t sk, const TA* B,
                               int64_t ldb, float* C, int64_t ldc, int64_t K) {
  switch (rows) {
    case 1: micro<TA, 1, NV, kAcc>(A, sr, sk, B, ldb, C, ldc, K); break;
    case 2: micro<TA, (kMR >= 2 ? 2 : 1), NV, kAcc>(A, sr, sk, B, ldb, C, ldc, K); break;
    case 3: micro<TA, (kMR >= 3 ? 3 : 1), NV, kAcc>(A, sr, sk, B, ldb, C, ldc, K); break;
    default: micro<TA, (kMR >= 4 ? 4 : 1), NV, kAcc>(A, sr, sk, B, ldb, C, ldc, K); break;
  }
}

template <bool kAcc, typename TA>
void gemm(int64_t M, int64_t N, int64_t K, const TA* A, int64_t sr, int64_t sk, const TA* B,
          int64_t ldb, float* C, int64_t ldc) {
  const int64_t nvec = N / kLanes;
  for (int64_t c0 = 0; c0 < nvec; c0 += kNV) {
    const int64_t nv = min_i64(kNV, nvec - c0);
    const TA* Bc = B + c0 * kLanes;
    float* Cc = C + c0 * kLanes;
    for (int64_t r0 = 0; r0 < M; r0 += kMR) {
      const int64_t rows = min_i64(kMR, M - r0);
      const TA* Ar = A + r0 * sr;
      float* Cr = Cc + r0 * ldc;
      switch (nv) {
        case 1: micro_rows<TA, 1, kAcc>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K); break;
        case 2: micro_rows<TA, (kNV >= 2 ? 2 : 1), kAcc>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K); break;
        case 3: micro_rows<TA, (kNV >= 3 ? 3 : 1), kAcc>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K); break;
        default: micro_rows<TA, (kNV >= 4 ? 4 : 1), kAcc>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K); break;
      }
    }
  }
}

// Two float32 rows -> one row of bf16 pairs (lo from `a`, hi from `b`), round-to-nearest-even;
// the values are finite here (probabilities and their gradients).
LLMK_AT_INLINE vu pack_bf16_pair(const vf& a, const vf& b) {
  const vu ua = (vu)a, ub = (vu)b;
  const vu ra = ua + 0x7FFFu + ((ua >> 16) & 1u), rb = ub + 0x7FFFu + ((ub >> 16) & 1u);
  return (ra >> 16) | (rb & 0xFFFF0000u);
}

template <typename T>
struct IsBf16 {
  static constexpr bool value = false;
};
template <>
struct IsBf16<Bf16> {
  static constexpr bool value = true;
};

// The bf16 backward runs S, dP and dv on vdpbf16ps at the avx512bf16 level (bwd_kv_dot_block).
template <typename T>
struct BwdDot {
  static constexpr bool value = LLMK_ISA_LEVEL >= 3 && IsBf16<T>::value;
};

#if LLMK_ISA_LEVEL >= 3
// One float32 vector -> 16 consecutive bf16 (same rounding as pack_bf16_pair).
LLMK_AT_INLINE void store_bf16_row(uint16_t* dst, const vf& a) {
  const vu ua = (vu)a;
  const vu ra = (ua + 0x7FFFu + ((ua >> 16) & 1u)) >> 16;
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16((__m512i)ra));
}
#endif

// ---------------------------------------------------------------------------------------------
// Masks and score transforms shared by forward and backward.

struct Geometry {
  int64_t B, Hq, Hkv, Sq, Sk, D, Dp, nQb, nKb, off;
  int64_t wl, wr;  // < 0: unbounded
  bool causal;
};

inline Geometry geometry(const cpu::AttentionParams& p) {
  Geometry g;
  g.B = p.batch;
  g.Hq = p.heads_q;
  g.Hkv = p.heads_kv;
  g.Sq = p.seq_q;
  g.Sk = p.seq_k;
  g.D = p.head_dim;
  g.Dp = round16(p.head_dim);
  g.nQb = (p.seq_q + kBQ - 1) / kBQ;
  g.nKb = (p.seq_k + kBK - 1) / kBK;
  g.off = p.seq_k - p.seq_q;
  g.wl = p.window_left;
  g.wr = p.window_right;
  g.causal = p.causal;
  return g;
}

// Keys [lo, hi) that some query of [i0, i1) sees.
LLMK_AT_INLINE void key_range(const Geometry& g, int64_t i0, int64_t i1, int64_t* lo,
                              int64_t* hi) {
  int64_t h = g.Sk, l = 0;
  if (g.causal) h = min_i64(h, i1 - 1 + g.off + 1);
  if (g.wr >= 0) h = min_i64(h, i1 - 1 + g.off + g.wr + 1);
  if (g.wl >= 0) l = max_i64(l, i0 + g.off - g.wl);
  *lo = l;
  *hi = h;
}

// Queries [lo, hi) that some key of [j0, j1) is seen by.
LLMK_AT_INLINE void query_range(const Geometry& g, int64_t j0, int64_t j1, int64_t* lo,
                                int64_t* hi) {
  int64_t l = 0, h = g.Sq;
  if (g.causal) l = max_i64(l, j0 - g.off);
  if (g.wr >= 0) l = max_i64(l, j0 - g.off - g.wr);
  if (g.wl >= 0) h = min_i64(h, j1 - 1 - g.off + g.wl + 1);
  *lo = l;
  *hi = h;
}

// Whether every (query, key) of the tile is visible (then no per-element mask is needed).
LLMK_AT_INLINE bool tile_unmasked(const Geometry& g, int64_t i0, int64_t i1, int64_t j0,
                                  int64_t j1, const uint8_t* kpm_row) {
  const int64_t rel_min = i0 + g.off - (j1 - 1), rel_max = i1 - 1 + g.off - j0;
  if (g.causal && rel_min < 0) return false;
  if (g.wl >= 0 && rel_max > g.wl) return false;
  if (g.wr >= 0 && rel_min < -g.wr) return false;
  if (kpm_row)
    for (int64_t j = j0; j < j1; ++j)
      if (!kpm_row[j]) return false;
  return true;
}

struct ScoreCtx {
  float scale, cap, inv_cap, slope;
  int32_t wl, wr;  // clamped to int32; < 0 unbounded
  bool causal;
  const uint8_t* kpm_row;  // (Sk) or nullptr
};

// One row of S^T (key j, nv vectors of queries starting at query i0): raw q.k in `s` becomes the
// final score (masked entries -inf); with kCap the tanh value goes to `t`.
template <bool kCap, bool kAlibi, bool kMask>
LLMK_AT_INLINE void score_row(const ScoreCtx& c, float* s, float* t, int64_t nv, int64_t i0,
                              int64_t off, int64_t j) {
  const vi lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const vf neg_inf = vsplat(-__builtin_inff());
  const bool key_ok = !kMask || c.kpm_row == nullptr || c.kpm_row[j] != 0;
  for (int64_t v = 0; v < nv; ++v) {
    vf x = vload(s + v * kLanes) * c.scale;
    if (kCap) {
      const vf th = vtanh(x * c.inv_cap);
      vstore(t + v * kLanes, th);
      x = th * c.cap;
    }
    vi rel = {};
    if (kAlibi || kMask) rel = lanes + static_cast<int32_t>(i0 + v * kLanes + off - j);
    if (kAlibi) x = x - c.slope * vabs(__builtin_convertvector(rel, vf));
    if (kMask) {
      if (!key_ok) {
        x = neg_inf;
      } else {
        vi ok = vi{} - 1;
        if (c.causal) ok &= rel >= 0;
        if (c.wl >= 0) ok &= rel <= c.wl;
        if (c.wr >= 0) ok &= rel >= -c.wr;
        x = vselect(ok, x, neg_inf);
      }
    }
    vstore(s + v * kLanes, x);
  }
}

template <bool kCap, bool kAlibi>
LLMK_AT_INLINE void score_tile(const ScoreCtx& c, bool mask, float* st, float* tt, int64_t nk,
                               int64_t nv, int64_t i0, int64_t off, int64_t j0) {
  if (mask) {
    for (int64_t j = 0; j < nk; ++j)
      score_row<kCap, kAlibi, true>(c, st + j * kBQ, tt + j * kBQ, nv, i0, off, j0 + j);
  } else {
    for (int64_t j = 0; j < nk; ++j)
      score_row<kCap, kAlibi, false>(c, st + j * kBQ, tt + j * kBQ, nv, i0, off, j0 + j);
  }
}

inline ScoreCtx score_ctx(const cpu::AttentionParams& p, int64_t b, int64_t h) {
  ScoreCtx c;
  c.scale = p.scale;
  c.cap = p.softcap > 0.0f ? p.softcap : 1.0f;
  c.inv_cap = 1.0f / c.cap;
  c.slope = p.alibi ? p.alibi[b * p.heads_q + h] : 0.0f;
  const int64_t big = int64_t{1} << 30;
  c.wl = p.window_left < 0 ? -1 : static_cast<int32_t>(min_i64(p.window_left, big));
  c.wr = p.window_right < 0 ? -1 : static_cast<int32_t>(min_i64(p.window_right, big));
  c.causal = p.causal;
  c.kpm_row = p.key_padding_mask ? p.key_padding_mask + b * p.seq_k : nullptr;
  return c;
}

// A key or value tile as float32 rows: the tensor itself for float32, else converted to `buf`.
template <typename T>
LLMK_AT_INLINE const float* tile_rows(const T* base, int64_t stride, int64_t nk, int64_t D,
                                      float* buf, int64_t* ld) {
  if constexpr (IsF32<T>::value) {
    *ld = stride;
    return base;
  } else {
    for (int64_t j = 0; j < nk; ++j) load_f32(base + j * stride, buf + j * D, D);
    *ld = D;
    return buf;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward: one query block of one head.
// Scratch: qt (D x BQ), st (BK x BQ), ot (D x BQ), kf (BK x D), vf (BK x D), row (Dp).

// kDot (bf16 at the avx512bf16 level, even head_dim and key row stride): both products run on
// vdpbf16ps with q, the keys and the values read as bf16 pairs and P rounded to bf16.
template <typename T, bool kCap, bool kAlibi, bool kDot>
void fwd_task(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
  const cpu::AttentionParams& p = a.p;
  const Geometry g = geometry(p);
  const int64_t BH = g.B * g.Hq;
  const int64_t rank = task / BH, bh = task % BH;
  const int64_t qb = g.causal ? g.nQb - 1 - rank : rank;
  const int64_t b = bh / g.Hq, h = bh % g.Hq, hk = h / (g.Hq / g.Hkv);
  const int64_t D = g.D;
  const int64_t i0 = qb * kBQ, nq = min_i64(kBQ, g.Sq - i0), N = round16(nq), nv = N / kLanes;

  float* qt = scratch;
  float* st = qt + D * kBQ;
  float* ot = st + kBK * kBQ;
  float* kf = ot + D * kBQ;
  float* vbuf = kf + kBK * D;
  float* row = vbuf + kBK * D;
  uint32_t* pv = reinterpret_cast<uint32_t*>(row + g.Dp);  // (BK / 2) x BQ bf16 pairs
  uint32_t* qv = reinterpret_cast<uint32_t*>(qt);          // (D / 2) x BQ bf16 pairs
  uint32_t* vv = reinterpret_cast<uint32_t*>(vbuf);        // (BK / 2) x D bf16 pairs

  const T* qbase = static_cast<const T*>(a.q) + b * a.qs.b + h * a.qs.h;
  const T* kbase = static_cast<const T*>(a.k) + b * a.ks.b + hk * a.ks.h;
  const T* vbase = static_cast<const T*>(a.v) + b * a.vs.b + hk * a.vs.h;

  if constexpr (kDot) {
    const int64_t Dh = D / 2;
    for (int64_t r = 0; r < nq; ++r) {
      uint32_t qrow[512];
      __builtin_memcpy(qrow, qbase + (i0 + r) * a.qs.s, static_cast<uint64_t>(D) * 2);
      for (int64_t dp = 0; dp < Dh; ++dp) qv[dp * kBQ + r] = qrow[dp];
    }
    for (int64_t dp = 0; dp < Dh; ++dp)
      for (int64_t r = nq; r < kBQ; ++r) qv[dp * kBQ + r] = 0u;
  } else {
    for (int64_t r = 0; r < nq; ++r) {
      load_f32(qbase + (i0 + r) * a.qs.s, row, D);
      for (int64_t d = 0; d < D; ++d) qt[d * kBQ + r] = row[d];
    }
    for (int64_t d = 0; d < D; ++d) fill(qt + d * kBQ + nq, kBQ - nq, 0.0f);
  }
  fill(ot, D * kBQ, 0.0f);

  const ScoreCtx c = score_ctx(p, b, h);
  const vf neg_inf = vsplat(-__builtin_inff());
  vf m[kBQ / kLanes], l[kBQ / kLanes];
  for (int64_t v = 0; v < kBQ / kLanes; ++v) {
    m[v] = neg_inf;
    l[v] = vf{};
  }

  int64_t lo, hi;
  key_range(g, i0, i0 + nq, &lo, &hi);
  if (lo < hi) {
    for (int64_t kb = lo / kBK; kb <= (hi - 1) / kBK; ++kb) {
      const int64_t j0 = kb * kBK, nk = min_i64(kBK, g.Sk - j0);
      int64_t ldk, ldv;
      if constexpr (kDot) {
        gemm<false>(nk, N, D / 2, reinterpret_cast<const uint32_t*>(kbase + j0 * a.ks.s),
                    a.ks.s / 2, 1, qv, kBQ, st, kBQ);
      } else {
        const float* kp = tile_rows(kbase + j0 * a.ks.s, a.ks.s, nk, D, kf, &ldk);
        gemm<false>(nk, N, D, kp, ldk, 1, qt, kBQ, st, kBQ);
      }
      const bool mask = !tile_unmasked(g, i0, i0 + nq, j0, j0 + nk, c.kpm_row);
      score_tile<kCap, kAlibi>(c, mask, st, st, nk, nv, i0, g.off, j0);
      // Online softmax, element-wise per query lane.
      vf alpha[kBQ / kLanes], msafe[kBQ / kLanes];
      for (int64_t v = 0; v < nv; ++v) {
        vf mx = m[v];
        for (int64_t j = 0; j < nk; ++j) mx = vmax(mx, vload(st + j * kBQ + v * kLanes));
        msafe[v] = vselect(mx == neg_inf, vf{}, mx);
        alpha[v] = vexp(m[v] - msafe[v]);
        m[v] = mx;
        vf sum = vf{};
        for (int64_t j = 0; j < nk; ++j) {
          float* sp = st + j * kBQ + v * kLanes;
          const vf e = vexp(vload(sp) - msafe[v]);
          vstore(sp, e);
          sum += e;
        }
        l[v] = l[v] * alpha[v] + sum;
      }
      for (int64_t d = 0; d < D; ++d)
        for (int64_t v = 0; v < nv; ++v) {
          float* op = ot + d * kBQ + v * kLanes;
          vstore(op, vload(op) * alpha[v]);
        }
      if constexpr (kDot) {
        const int64_t nkp = (nk + 1) / 2;
        const vf zero = vf{};
        for (int64_t jp = 0; jp < nkp; ++jp) {
          const bool two = 2 * jp + 1 < nk;
          for (int64_t v = 0; v < nv; ++v) {
            const vf p0 = vload(st + 2 * jp * kBQ + v * kLanes);
            const vf p1 = two ? vload(st + (2 * jp + 1) * kBQ + v * kLanes) : zero;
            const vu w = pack_bf16_pair(p0, p1);
            __builtin_memcpy(pv + jp * kBQ + v * kLanes, &w, sizeof w);
          }
          const uint16_t* v0 = reinterpret_cast<const uint16_t*>(vbase + (j0 + 2 * jp) * a.vs.s);
          const uint16_t* v1 =
              reinterpret_cast<const uint16_t*>(vbase + (j0 + 2 * jp + (two ? 1 : 0)) * a.vs.s);
          const uint32_t hi_mask = two ? 0xFFFFFFFFu : 0u;
          for (int64_t d = 0; d < D; ++d)
            vv[jp * D + d] = static_cast<uint32_t>(v0[d]) |
                             ((static_cast<uint32_t>(v1[d]) << 16) & hi_mask);
        }
        gemm<true>(D, N, nkp, vv, 1, D, pv, kBQ, ot, kBQ);
      } else {
        const float* vp = tile_rows(vbase + j0 * a.vs.s, a.vs.s, nk, D, vbuf, &ldv);
        gemm<true>(D, N, nk, vp, 1, ldv, st, kBQ, ot, kBQ);
      }
    }
  }

  float mf[kBQ], lf[kBQ];
  __builtin_memcpy(mf, m, sizeof mf);
  __builtin_memcpy(lf, l, sizeof lf);
  T* obase = static_cast<T*>(a.out) + b * a.os.b + h * a.os.h;
  float* lse = a.lse + (b * g.Hq + h) * g.Sq;
  for (int64_t r = 0; r < nq; ++r) {
    const float lr = lf[r];
    if (!(lr > 0.0f)) {
      fill(row, D, 0.0f);
      lse[i0 + r] = -__builtin_inff();
    } else {
      const float inv = 1.0f / lr;
      for (int64_t d = 0; d < D; ++d) row[d] = ot[d * kBQ + r] * inv;
      lse[i0 + r] = mf[r] + __builtin_logf(lr);
    }
    store_f32(row, obase + (i0 + r) * a.os.s, D);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward pass 1: pack q, dout (rows and transposed), lse and delta of one query block.
// Scratch: three rows of Dp.

template <typename T>
void bwd_prep_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  const cpu::AttentionParams& p = a.p;
  const Geometry g = geometry(p);
  const int64_t blk = task;
  const int64_t bh = blk / g.nQb, qb = blk % g.nQb;
  const int64_t b = bh / g.Hq, h = bh % g.Hq;
  const int64_t D = g.D, Dp = g.Dp;
  const int64_t i0 = qb * kBQ, nq = min_i64(kBQ, g.Sq - i0);
  float* qt = a.q_t + blk * D * kBQ;
  float* dot = a.do_t + blk * D * kBQ;
  float* qr = a.q_r + blk * kBQ * Dp;
  float* dor = a.do_r + blk * kBQ * Dp;
  float* lq = a.lse_q + blk * kBQ;
  float* dl = a.delta + blk * kBQ;
  float* orow = scratch;
  const T* qbase = static_cast<const T*>(a.q) + b * a.qs.b + h * a.qs.h;
  const T* obase = static_cast<const T*>(a.out) + b * a.os.b + h * a.os.h;
  const T* dobase = static_cast<const T*>(a.dout) + b * a.dos.b + h * a.dos.h;
  const float* lse = a.lse + (b * g.Hq + h) * g.Sq;
  if constexpr (BwdDot<T>::value) {
    // bf16 pairs: q_t / do_t hold (ceil(D / 2), BQ) pairs along d, do_r holds (BQ / 2, Dp) pairs
    // along the queries; q_r stays float32 rows (dk's product keeps dS in float32); zero padding
    // everywhere else.
    const int64_t Dh = (D + 1) / 2;
    uint32_t* qv = reinterpret_cast<uint32_t*>(qt);
    uint32_t* dov = reinterpret_cast<uint32_t*>(dot);
    uint32_t* dop = reinterpret_cast<uint32_t*>(dor);
    for (int64_t e = 0; e < Dh * kBQ; ++e) qv[e] = dov[e] = 0u;
    fill(qr, kBQ * Dp, 0.0f);
    for (int64_t e = 0; e < kBQ / 2 * Dp; ++e) dop[e] = 0u;
    float* drow = scratch + Dp;
    for (int64_t r = 0; r < nq; ++r) {
      const uint16_t* qs = reinterpret_cast<const uint16_t*>(qbase + (i0 + r) * a.qs.s);
      const uint16_t* ds = reinterpret_cast<const uint16_t*>(dobase + (i0 + r) * a.dos.s);
      load_f32(dobase + (i0 + r) * a.dos.s, drow, D);
      load_f32(qbase + (i0 + r) * a.qs.s, qr + r * Dp, D);
      load_f32(obase + (i0 + r) * a.os.s, orow, D);
      float delta = 0.0f;
      for (int64_t d = 0; d < D; ++d) delta += drow[d] * orow[d];
      const float lr = lse[i0 + r];
      const bool dead = lr == -__builtin_inff();
      lq[r] = dead ? __builtin_inff() : lr;
      dl[r] = dead ? 0.0f : delta;
      const uint32_t rsh = static_cast<uint32_t>(16 * (r & 1));
      for (int64_t d = 0; d < D; ++d) {
        const uint32_t dsh = static_cast<uint32_t>(16 * (d & 1));
        qv[(d / 2) * kBQ + r] |= static_cast<uint32_t>(qs[d]) << dsh;
        dov[(d / 2) * kBQ + r] |= static_cast<uint32_t>(ds[d]) << dsh;
        dop[(r / 2) * Dp + d] |= static_cast<uint32_t>(ds[d]) << rsh;
      }
    }
    for (int64_t r = nq; r < kBQ; ++r) {
      lq[r] = __builtin_inff();
      dl[r] = 0.0f;
    }
    return;
  }
  fill(qr, kBQ * Dp, 0.0f);
  fill(dor, kBQ * Dp, 0.0f);
  for (int64_t r = 0; r < nq; ++r) {
    float* qrow = qr + r * Dp;
    float* drow = dor + r * Dp;
    load_f32(qbase + (i0 + r) * a.qs.s, qrow, D);
    load_f32(dobase + (i0 + r) * a.dos.s, drow, D);
    load_f32(obase + (i0 + r) * a.os.s, orow, D);
    float delta = 0.0f;
    for (int64_t d = 0; d < D; ++d) delta += drow[d] * orow[d];
    const float lr = lse[i0 + r];
    const bool dead = lr == -__builtin_inff();
    lq[r] = dead ? __builtin_inff() : lr;
    dl[r] = dead ? 0.0f : delta;
    for (int64_t d = 0; d < D; ++d) {
      qt[d * kBQ + r] = qrow[d];
      dot[d * kBQ + r] = drow[d];
    }
  }
  for (int64_t r = nq; r < kBQ; ++r) {
    lq[r] = __builtin_inff();
    dl[r] = 0.0f;
  }
  for (int64_t d = 0; d < D; ++d) {
    fill(qt + d * kBQ + nq, kBQ - nq, 0.0f);
    fill(dot + d * kBQ + nq, kBQ - nq, 0.0f);
  }
}

// Backward pass 2: dk, dv of one key chunk of one kv head, and that chunk's dq contribution.
// Scratch: kf, vf (BK x D), dkacc, dvacc (BK x Dp), pt, dpt, tt (BK x BQ), row (Dp).
// With BwdDot (bf16, avx512bf16 level) one key block runs S, dP and dv on vdpbf16ps: the key and
// value rows as bf16 pairs along d (in kf, vf), P rounded to bf16 rows (pairs along the queries:
// pb), float32 accumulation. dS stays float32 and dk, dq keep the float32 FMA products (kr: the
// key rows as float32): dS rounded to bf16 misses the 1e-2 tolerance on dq, dk for sharp
// softmaxes, and a (hi, lo) bf16 split of dS measured slower than FMA here.
// Extra scratch after row: kr (BK x D), pb (BK x BQ bf16).

template <typename T, bool kCap, bool kAlibi>
void bwd_kv_dot_block(const cpu::AttentionBwdArgs& a, const Geometry& g, float* scratch,
                      int64_t chunk, int64_t b, int64_t hk, int64_t j0, int64_t nk, int64_t ilo,
                      int64_t ihi) {
#if LLMK_ISA_LEVEL >= 3
  const cpu::AttentionParams& p = a.p;
  const int64_t G = g.Hq / g.Hkv;
  const int64_t D = g.D, Dp = g.Dp, Dh = (D + 1) / 2;
  uint32_t* kp = reinterpret_cast<uint32_t*>(scratch);               // nk x Dh pairs
  uint32_t* vp = reinterpret_cast<uint32_t*>(scratch + kBK * D);     // nk x Dh pairs
  float* dkacc = scratch + 2 * kBK * D;
  float* dvacc = dkacc + kBK * Dp;
  float* pt = dvacc + kBK * Dp;
  float* dpt = pt + kBK * kBQ;
  float* tt = dpt + kBK * kBQ;
  float* row = tt + kBK * kBQ;
  float* kr = row + Dp;                                              // nk x D float32
  uint16_t* pb = reinterpret_cast<uint16_t*>(kr + kBK * D);          // nk x BQ bf16

  const uint16_t* kbase = reinterpret_cast<const uint16_t*>(static_cast<const T*>(a.k) +
                                                            b * a.ks.b + hk * a.ks.h);
  const uint16_t* vbase = reinterpret_cast<const uint16_t*>(static_cast<const T*>(a.v) +
                                                            b * a.vs.b + hk * a.vs.h);
  for (int64_t j = 0; j < nk; ++j) {
    const uint16_t* krow = kbase + (j0 + j) * a.ks.s;
    const uint16_t* vrow = vbase + (j0 + j) * a.vs.s;
    for (int64_t dp = 0; dp < Dh; ++dp) {
      const bool two = 2 * dp + 1 < D;
      kp[j * Dh + dp] = static_cast<uint32_t>(krow[2 * dp]) |
                        (two ? static_cast<uint32_t>(krow[2 * dp + 1]) << 16 : 0u);
      vp[j * Dh + dp] = static_cast<uint32_t>(vrow[2 * dp]) |
                        (two ? static_cast<uint32_t>(vrow[2 * dp + 1]) << 16 : 0u);
    }
  }
  for (int64_t j = 0; j < nk; ++j)
    load_f32(reinterpret_cast<const Bf16*>(kbase + (j0 + j) * a.ks.s), kr + j * D, D);
  for (int64_t gi = 0; gi < G; ++gi) {
    const int64_t h = hk * G + gi;
    const ScoreCtx c = score_ctx(p, b, h);
    for (int64_t qb = ilo / kBQ; qb <= (ihi - 1) / kBQ; ++qb) {
      const int64_t blk = (b * g.Hq + h) * g.nQb + qb;
      const int64_t i0 = qb * kBQ, nq = min_i64(kBQ, g.Sq - i0);
      const int64_t N = round16(nq), nv = N / kLanes, nqp = (nq + 1) / 2;
      const uint32_t* qv = reinterpret_cast<const uint32_t*>(a.q_t + blk * D * kBQ);
      const uint32_t* dov = reinterpret_cast<const uint32_t*>(a.do_t + blk * D * kBQ);
      const float* qr = a.q_r + blk * kBQ * Dp;
      const uint32_t* dop = reinterpret_cast<const uint32_t*>(a.do_r + blk * kBQ * Dp);
      const float* lq = a.lse_q + blk * kBQ;
      const float* dl = a.delta + blk * kBQ;
      float* dqt = a.dq_t + (chunk * g.B * g.Hq * g.nQb + blk) * D * kBQ;

      gemm<false>(nk, N, Dh, kp, Dh, 1, qv, kBQ, pt, kBQ);
      const bool mask = !tile_unmasked(g, i0, i0 + nq, j0, j0 + nk, c.kpm_row);
      score_tile<kCap, kAlibi>(c, mask, pt, tt, nk, nv, i0, g.off, j0);
      gemm<false>(nk, N, Dh, vp, Dh, 1, dov, kBQ, dpt, kBQ);
      for (int64_t v = 0; v < nv; ++v) {
        const vf lv = vload(lq + v * kLanes), dv = vload(dl + v * kLanes);
        for (int64_t j = 0; j < nk; ++j) {
          const vf pv = vexp(vload(pt + j * kBQ + v * kLanes) - lv);
          vf d = pv * (vload(dpt + j * kBQ + v * kLanes) - dv);
          if (kCap) {
            const vf th = vload(tt + j * kBQ + v * kLanes);
            d = d * (1.0f - th * th);
          }
          store_bf16_row(pb + j * kBQ + v * kLanes, pv);
          vstore(dpt + j * kBQ + v * kLanes, d);
        }
      }
      gemm<true>(nk, Dp, nqp, reinterpret_cast<const uint32_t*>(pb), kBQ / 2, 1, dop, Dp, dvacc,
                 Dp);
      gemm<true>(nk, Dp, nq, dpt, kBQ, 1, qr, Dp, dkacc, Dp);
      gemm<true>(D, N, nk, kr, 1, D, dpt, kBQ, dqt, kBQ);
    }
  }
#else
  (void)a, (void)g, (void)scratch, (void)chunk, (void)b, (void)hk, (void)j0, (void)nk,
      (void)ilo, (void)ihi;
#endif
}


template <typename T, bool kCap, bool kAlibi>
void bwd_kv_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  const cpu::AttentionParams& p = a.p;
  const Geometry g = geometry(p);
  const int64_t BHk = g.B * g.Hkv;
  const int64_t chunk = task / BHk, bhk = task % BHk;
  const int64_t b = bhk / g.Hkv, hk = bhk % g.Hkv;
  const int64_t G = g.Hq / g.Hkv;
  const int64_t D = g.D, Dp = g.Dp;

  float* kf = scratch;
  float* vbuf = kf + kBK * D;
  float* dkacc = vbuf + kBK * D;
  float* dvacc = dkacc + kBK * Dp;
  float* pt = dvacc + kBK * Dp;
  float* dpt = pt + kBK * kBQ;
  float* tt = dpt + kBK * kBQ;
  float* row = tt + kBK * kBQ;

  const int64_t blocks_per_bh = g.nQb * D * kBQ;
  float* dqt_base = a.dq_t + ((chunk * g.B + b) * g.Hq + hk * G) * blocks_per_bh;
  fill(dqt_base, G * blocks_per_bh, 0.0f);

  const T* kbase = static_cast<const T*>(a.k) + b * a.ks.b + hk * a.ks.h;
  const T* vbase = static_cast<const T*>(a.v) + b * a.vs.b + hk * a.vs.h;
  T* dk_out = static_cast<T*>(a.dk) + (b * g.Hkv + hk) * g.Sk * D;
  T* dv_out = static_cast<T*>(a.dv) + (b * g.Hkv + hk) * g.Sk * D;

  const int64_t kb_begin = chunk * a.chunk_blocks;
  const int64_t kb_end = min_i64(g.nKb, kb_begin + a.chunk_blocks);
  for (int64_t kb = kb_begin; kb < kb_end; ++kb) {
    const int64_t j0 = kb * kBK, nk = min_i64(kBK, g.Sk - j0);
    fill(dkacc, nk * Dp, 0.0f);
    fill(dvacc, nk * Dp, 0.0f);
    int64_t ilo, ihi;
    query_range(g, j0, j0 + nk, &ilo, &ihi);
    if constexpr (BwdDot<T>::value) {
      if (ilo < ihi)
        bwd_kv_dot_block<T, kCap, kAlibi>(a, g, scratch, chunk, b, hk, j0, nk, ilo, ihi);
    } else if (ilo < ihi) {
      int64_t ldk, ldv;
      const float* kp = tile_rows(kbase + j0 * a.ks.s, a.ks.s, nk, D, kf, &ldk);
      const float* vp = tile_rows(vbase + j0 * a.vs.s, a.vs.s, nk, D, vbuf, &ldv);
      for (int64_t gi = 0; gi < G; ++gi) {
        const int64_t h = hk * G + gi;
        const ScoreCtx c = score_ctx(p, b, h);
        for (int64_t qb = ilo / kBQ; qb <= (ihi - 1) / kBQ; ++qb) {
          const int64_t blk = (b * g.Hq + h) * g.nQb + qb;
          const int64_t i0 = qb * kBQ, nq = min_i64(kBQ, g.Sq - i0);
          const int64_t N = round16(nq), nv = N / kLanes;
          const float* qt = a.q_t + blk * D * kBQ;
          const float* dot = a.do_t + blk * D * kBQ;
          const float* qr = a.q_r + blk * kBQ * Dp;
          const float* dor = a.do_r + blk * kBQ * Dp;
          const float* lq = a.lse_q + blk * kBQ;
          const float* dl = a.delta + blk * kBQ;
          float* dqt = a.dq_t + (chunk * g.B * g.Hq * g.nQb + blk) * D * kBQ;

          gemm<false>(nk, N, D, kp, ldk, 1, qt, kBQ, pt, kBQ);
          const bool mask = !tile_unmasked(g, i0, i0 + nq, j0, j0 + nk, c.kpm_row);
          score_tile<kCap, kAlibi>(c, mask, pt, tt, nk, nv, i0, g.off, j0);
          gemm<false>(nk, N, D, vp, ldv, 1, dot, kBQ, dpt, kBQ);
          for (int64_t v = 0; v < nv; ++v) {
            const vf lv = vload(lq + v * kLanes), dv = vload(dl + v * kLanes);
            for (int64_t j = 0; j < nk; ++j) {
              float* sp = pt + j * kBQ + v * kLanes;
              float* dp = dpt + j * kBQ + v * kLanes;
              const vf pv = vexp(vload(sp) - lv);
              vstore(sp, pv);
              vf ds = pv * (vload(dp) - dv);
              if (kCap) {
                const vf th = vload(tt + j * kBQ + v * kLanes);
                ds = ds * (1.0f - th * th);
              }
              vstore(dp, ds);
            }
          }
          gemm<true>(nk, Dp, nq, pt, kBQ, 1, dor, Dp, dvacc, Dp);
          gemm<true>(nk, Dp, nq, dpt, kBQ, 1, qr, Dp, dkacc, Dp);
          gemm<true>(D, N, nk, kp, 1, ldk, dpt, kBQ, dqt, kBQ);
        }
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      const float* src = dkacc + j * Dp;
      for (int64_t d = 0; d < D; ++d) row[d] = src[d] * p.scale;
      store_f32(row, dk_out + (j0 + j) * D, D);
      store_f32(dvacc + j * Dp, dv_out + (j0 + j) * D, D);
    }
  }
}

// Backward pass 3: dq of one query block = scale * (sum over chunks, in chunk order).
// Scratch: acc (D x BQ), row (Dp).

template <typename T>
void bwd_dq_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  const cpu::AttentionParams& p = a.p;
  const Geometry g = geometry(p);
  const int64_t blk = task;
  const int64_t i0 = (blk % g.nQb) * kBQ, bh = blk / g.nQb;
  const int64_t nq = min_i64(kBQ, g.Sq - i0);
  const int64_t D = g.D, tile = D * kBQ;
  const int64_t chunk_stride = g.B * g.Hq * g.nQb * tile;
  float* acc = scratch;
  float* row = acc + tile;
  const float* src = a.dq_t + blk * tile;
  for (int64_t e = 0; e < tile; ++e) acc[e] = src[e];
  for (int64_t ch = 1; ch < a.num_chunks; ++ch) {
    const float* s2 = src + ch * chunk_stride;
    for (int64_t e = 0; e < tile; ++e) acc[e] += s2[e];
  }
  T* dq = static_cast<T*>(a.dq) + (bh * g.Sq + i0) * D;
  for (int64_t r = 0; r < nq; ++r) {
    for (int64_t d = 0; d < D; ++d) row[d] = acc[d * kBQ + r] * p.scale;
    store_f32(row, dq + r * D, D);
  }
}

template <typename T, bool kDot>
void fwd_dispatch2(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
  const bool cap = a.p.softcap > 0.0f, alibi = a.p.alibi != nullptr;
  if (cap) {
    if (alibi) fwd_task<T, true, true, kDot>(a, task, scratch);
    else fwd_task<T, true, false, kDot>(a, task, scratch);
  } else {
    if (alibi) fwd_task<T, false, true, kDot>(a, task, scratch);
    else fwd_task<T, false, false, kDot>(a, task, scratch);
  }
}

template <typename T>
void fwd_dispatch(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
#if LLMK_ISA_LEVEL >= 3
  if constexpr (!IsF32<T>::value) {
    const bool is_bf16 = a.p.dtype == cpu::ElemType::bf16;
    const int64_t D = a.p.head_dim;
    if (is_bf16 && D % 2 == 0 && D <= 1024 && a.ks.s % 2 == 0 && a.ks.h % 2 == 0 &&
        a.ks.b % 2 == 0 && reinterpret_cast<uintptr_t>(a.k) % 4 == 0) {
      fwd_dispatch2<T, true>(a, task, scratch);
      return;
    }
  }
#endif
  fwd_dispatch2<T, false>(a, task, scratch);
}

template <typename T>
void bwd_kv_dispatch(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  const bool cap = a.p.softcap > 0.0f, alibi = a.p.alibi != nullptr;
  if (cap) {
    if (alibi) bwd_kv_task<T, true, true>(a, task, scratch);
    else bwd_kv_task<T, true, false>(a, task, scratch);
  } else {
    if (alibi) bwd_kv_task<T, false, true>(a, task, scratch);
    else bwd_kv_task<T, false, false>(a, task, scratch);
  }
}

#undef LLMK_AT_INLINE

}  // namespace

void attention_fwd_task(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
  switch (a.p.dtype) {
    case cpu::ElemType::f32: fwd_dispatch<float>(a, task, scratch); break;
    case cpu::ElemType::f16: fwd_dispatch<F16>(a, task, scratch); break;
    case cpu::ElemType::bf16: fwd_dispatch<Bf16>(a, task, scratch); break;
  }
}

void attention_bwd_prep_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  switch (a.p.dtype) {
    case cpu::ElemType::f32: bwd_prep_task<float>(a, task, scratch); break;
    case cpu::ElemType::f16: bwd_prep_task<F16>(a, task, scratch); break;
    case cpu::ElemType::bf16: bwd_prep_task<Bf16>(a, task, scratch); break;
  }
}

void attention_bwd_kv_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  switch (a.p.dtype) {
    case cpu::ElemType::f32: bwd_kv_dispatch<float>(a, task, scratch); break;
    case cpu::ElemType::f16: bwd_kv_dispatch<F16>(a, task, scratch); break;
    case cpu::ElemType::bf16: bwd_kv_dispatch<Bf16>(a, task, scratch); break;
  }
}

void attention_bwd_dq_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  switch (a.p.dtype) {
    case cpu::ElemType::f32: bwd_dq_task<float>(a, task, scratch); break;
    case cpu::ElemType::f16: bwd_dq_task<F16>(a, task, scratch); break;
    case cpu::ElemType::bf16: bwd_dq_task<Bf16>(a, task, scratch); break;
  }
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
