// Tiles and masks of the attention CPU kernel (see attention_cpu_kernel_impl.h), shared by the
// forward and the backward: the problem geometry, which key (query) blocks a query (key) block
// can see, whether a tile needs per-element masks, and the score transform of one tile.

// Half a key block, where both passes split a causal diagonal tile: a multiple of 16 (query
// lanes) and of 2 (bf16 pairs), so that a half tile's operands start at a vector and a pair.
constexpr int64_t kHalf = kBK / 2;
static_assert(kHalf % 16 == 0 && kBQ == kBK, "half tiles split both blocks at kHalf");

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
LLMK_ALWAYS_INLINE void key_range(const Geometry& g, int64_t i0, int64_t i1, int64_t* lo,
                                  int64_t* hi) {
  int64_t h = g.Sk, l = 0;
  if (g.causal) h = min_i64(h, i1 - 1 + g.off + 1);
  if (g.wr >= 0) h = min_i64(h, i1 - 1 + g.off + g.wr + 1);
  if (g.wl >= 0) l = max_i64(l, i0 + g.off - g.wl);
  *lo = l;
  *hi = h;
}

// Queries [lo, hi) that some key of [j0, j1) is seen by.
LLMK_ALWAYS_INLINE void query_range(const Geometry& g, int64_t j0, int64_t j1, int64_t* lo,
                                    int64_t* hi) {
  int64_t l = 0, h = g.Sq;
  if (g.causal) l = max_i64(l, j0 - g.off);
  if (g.wr >= 0) l = max_i64(l, j0 - g.off - g.wr);
  if (g.wl >= 0) h = min_i64(h, j1 - 1 - g.off + g.wl + 1);
  *lo = l;
  *hi = h;
}

// Whether every (query, key) of the tile is visible (then no per-element mask is needed).
LLMK_ALWAYS_INLINE bool tile_unmasked(const Geometry& g, int64_t i0, int64_t i1, int64_t j0,
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
LLMK_ALWAYS_INLINE void score_row(const ScoreCtx& c, float* s, float* t, int64_t nv, int64_t i0,
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
        if (c.causal) ok &= vge(rel, 0);
        if (c.wl >= 0) ok &= vle(rel, c.wl);
        if (c.wr >= 0) ok &= vge(rel, -c.wr);
        x = vselect(ok, x, neg_inf);
      }
    }
    vstore(s + v * kLanes, x);
  }
}

template <bool kCap, bool kAlibi>
LLMK_ALWAYS_INLINE void score_tile(const ScoreCtx& c, bool mask, float* st, float* tt, int64_t nk,
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
LLMK_ALWAYS_INLINE const float* tile_rows(const T* base, int64_t stride, int64_t nk, int64_t D,
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

// The softmax exponentials of both passes as 2^t, t = u * c - m2 by one FMA per element: with no
// softcap or ALiBi and scale > 0, u is the raw q.k and c = scale * log2(e), so the tile needs no
// pass of its own to apply the scale (score_tile runs only where a mask must be written), and
// the row offset m2 (the running max, or lse) is in base 2 already. A degree-5 polynomial for 2^f
// on [-1/2, 1/2] (weighted least squares, relative error 2e-7 in float32 Horner form) on FMAs:
// about half the multiplies of vexp, whose argument reduction the base-2 form skips. With AVX-512
// the rounding and the 2^n are one instruction each (vrndscaleps, vscalefps; ~11 vector operations
// an element instead of ~16: the exponentials are most of the forward's work outside its tile
// products). t = -inf (a masked score) gives 0, as does anything below -150; NaN stays NaN.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

LLMK_ALWAYS_INLINE vf exp2_poly(const vf& f) {
  vf p = vsplat(1.3266970636323094e-3f);
  p = vfma(p, f, vsplat(9.675459936261177e-3f));
  p = vfma(p, f, vsplat(5.550742521882057e-2f));
  p = vfma(p, f, vsplat(2.4022121727466583e-1f));
  p = vfma(p, f, vsplat(6.931469440460205e-1f));
  return vfma(p, f, vsplat(1.0000001192092896f));
}

LLMK_ALWAYS_INLINE vf vexp2_softmax(const vf& t) {
#if LLMK_ISA_LEVEL >= 2
  // -160: 2^-160 times p (< 1.5) rounds to 0 in vscalefps, which saturates large n to inf itself.
  const vf tc = vselect(vlt(t, -160.0f), vsplat(-160.0f), t);  // a NaN compares false: it passes through
  // The all-lanes mask forms: the plain ones start from _mm512_undefined_ps, which GCC 12 reports
  // as maybe-uninitialized.
  const __m512 n = _mm512_mask_roundscale_ps((__m512)tc, 0xFFFF, (__m512)tc,
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 p = (__m512)exp2_poly(tc - (vf)n);
  return (vf)_mm512_mask_scalef_ps(p, 0xFFFF, p, n);
#else
  const vf lo = vsplat(-127.0f), hi = vsplat(127.0f);
  vf tc = vselect(vlt(t, lo), lo, t);  // a NaN compares false: it passes through
  tc = vselect(vgt(tc, hi), hi, tc);
  const vf magic = vsplat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const vf n = (tc + magic) - magic;
  const vi k = __builtin_convertvector(n, vi);     // in [-127, 127] (garbage for NaN: p is NaN)
  return exp2_poly(tc - n) * (vf)((k + 127) << 23);  // k = -127 gives the bits of 0
#endif
}

// Whether the scores enter vexp2_softmax raw, their scale folded into its exponent's factor.
LLMK_ALWAYS_INLINE bool scores_fused(bool cap, bool alibi, float scale) {
  return !cap && !alibi && scale > 0.0f;
}
