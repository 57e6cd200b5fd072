// Operands of the attention CPU backward's key pass (see attention_cpu_backward_impl.h): the
// per-thread scratch layout, one query block's tile and one key block's tile, in the layouts the
// tile products read (float32 rows, or bf16 pairs with BwdDot).

// One query block's operands of pass 1, built in the task's scratch when the block is visited
// (no copy of q or dout the size of the inputs). Without BwdDot q_t / do_t hold (D, BQ) float32
// and q_r / do_r (BQ, Dp) float32 rows. With it q_t / do_t hold (ceil(D / 2), BQ) bf16 pairs
// along d and q_r / do_r (BQ / 2, Dp) pairs along the queries (the B operands of dk, dv). Zero
// padding elsewhere.
struct QueryTile {
  float *q_t, *do_t, *q_r, *do_r;
};

// kDot: the query tile's bf16 pairs. Along the queries (q_r, do_r: row r / 2 of Dp lanes pairs
// rows r and r + 1) as one vectorizable loop per row pair, and along d (q_t, do_t: a row's
// consecutive bf16 pairs, transposed) by 32-bit words: filling them element by element with
// shifts and ors took ~5% of the training shape's bf16 backward (S = 512, eight query blocks a head;
// single-thread CPU time, same-process A/B on a busy machine).
template <typename T>
void load_query_pairs(const cpu::AttentionBwdArgs& a, const Geometry& g, const T* qbase,
                      const T* dobase, int64_t i0, int64_t nq, const QueryTile& t) {
  const int64_t D = g.D, Dp = g.Dp, Dh = (D + 1) / 2;
  const auto row = [&](const T* base, int64_t stride, int64_t r) {
    return reinterpret_cast<const uint16_t*>(base + (i0 + r) * stride);
  };
  const auto pair_rows = [&](const T* base, int64_t stride, uint32_t* dst) {
    for (int64_t rp = 0; rp < kBQ / 2; ++rp) {
      uint32_t* out = dst + rp * Dp;
      const int64_t r0 = 2 * rp;
      int64_t d = 0;
      if (r0 + 1 < nq) {
        const uint16_t* x0 = row(base, stride, r0);
        const uint16_t* x1 = row(base, stride, r0 + 1);
        for (; d < D; ++d) out[d] = static_cast<uint32_t>(x0[d]) | static_cast<uint32_t>(x1[d]) << 16;
      } else if (r0 < nq) {
        const uint16_t* x0 = row(base, stride, r0);
        for (; d < D; ++d) out[d] = x0[d];
      }
      for (; d < Dp; ++d) out[d] = 0u;
    }
  };
  const auto pair_cols = [&](const T* base, int64_t stride, uint32_t* dst) {
    if (D % 32 == 0) {  // 16 x 16 word blocks
      load_word_columns(reinterpret_cast<const char*>(row(base, stride, 0)), stride * 2, nq, Dh, dst);
      return;
    }
    for (int64_t r = 0; r < nq; ++r) {
      const uint16_t* x = row(base, stride, r);
      for (int64_t dp = 0; dp < D / 2; ++dp) {
        uint32_t word;
        __builtin_memcpy(&word, x + 2 * dp, sizeof word);
        dst[dp * kBQ + r] = word;
      }
      if (D % 2) dst[(Dh - 1) * kBQ + r] = x[D - 1];
    }
    for (int64_t dp = 0; dp < Dh; ++dp)
      for (int64_t r = nq; r < kBQ; ++r) dst[dp * kBQ + r] = 0u;
  };
  pair_rows(qbase, a.qs.s, reinterpret_cast<uint32_t*>(t.q_r));
  pair_rows(dobase, a.dos.s, reinterpret_cast<uint32_t*>(t.do_r));
  pair_cols(qbase, a.qs.s, reinterpret_cast<uint32_t*>(t.q_t));
  pair_cols(dobase, a.dos.s, reinterpret_cast<uint32_t*>(t.do_t));
}

template <typename T>
void load_query_tile(const cpu::AttentionBwdArgs& a, const Geometry& g, int64_t b, int64_t h,
                     int64_t i0, int64_t nq, const QueryTile& t) {
  constexpr bool kDot = BwdDot<T>::value;
  const int64_t D = g.D, Dp = g.Dp;
  const T* qbase = static_cast<const T*>(a.q) + b * a.qs.b + h * a.qs.h;
  const T* dobase = static_cast<const T*>(a.dout) + b * a.dos.b + h * a.dos.h;
  if constexpr (kDot) {
    load_query_pairs(a, g, qbase, dobase, i0, nq, t);
    return;
  }
  if (IsF32<T>::value && D % kLanes == 0) {
    // The lanes by 16 x 16 blocks and the rows as they are (Dp == D: no padding; rows from nq on
    // are never read): element by element, with the tiles zeroed first, this took ~6% of the
    // training shape's fp32 backward.
    const auto columns = [&](const T* base, int64_t stride, float* dst) {
      load_word_columns(reinterpret_cast<const char*>(base + i0 * stride), stride * 4, nq, D,
                        reinterpret_cast<uint32_t*>(dst));
    };
    columns(qbase, a.qs.s, t.q_t);
    columns(dobase, a.dos.s, t.do_t);
    for (int64_t r = 0; r < nq; ++r) {
      load_f32(qbase + (i0 + r) * a.qs.s, t.q_r + r * Dp, D);
      load_f32(dobase + (i0 + r) * a.dos.s, t.do_r + r * Dp, D);
    }
    return;
  }
  fill(t.q_r, kBQ * Dp, 0.0f);
  fill(t.do_r, kBQ * Dp, 0.0f);
  for (int64_t r = 0; r < nq; ++r) {
    float* qrow = t.q_r + r * Dp;
    float* drow = t.do_r + r * Dp;
    load_f32(qbase + (i0 + r) * a.qs.s, qrow, D);
    load_f32(dobase + (i0 + r) * a.dos.s, drow, D);
    for (int64_t d = 0; d < D; ++d) {
      t.q_t[d * kBQ + r] = qrow[d];
      t.do_t[d * kBQ + r] = drow[d];
    }
  }
  for (int64_t d = 0; d < D; ++d) {
    fill(t.q_t + d * kBQ + nq, kBQ - nq, 0.0f);
    fill(t.do_t + d * kBQ + nq, kBQ - nq, 0.0f);
  }
}

// Pass 1 scratch (attention_scratch_floats and, for bf16, attention_key_cache_floats in the
// glue count it): kf, vf (BK x D), pt, dpt, tt (BK x BQ), row (Dp), dqacc (D x BQ, the block's
// dq^T over the chunk's keys), the query tile (q_t, do_t: D x BQ; q_r, do_r: BQ x Dp), the bf16
// operands of BwdDot (pb, dsb: P and dS as BK x BQ bf16 rows, pairs along the queries; dsk: dS as
// BK / 2 x BQ pairs of consecutive keys), the block's lse and delta (lq, dl: BQ each) and, with
// BwdDot, key_cache: every key block of the chunk as a KeyTile's operands.
struct BwdKvScratch {
  float *kf, *vbuf, *pt, *dpt, *tt, *row, *dqacc, *lq, *dl, *key_cache;
  uint16_t *pb, *dsb;
  uint32_t* dsk;
  QueryTile qt;
};

LLMK_ALWAYS_INLINE BwdKvScratch bwd_kv_scratch(float* scratch, int64_t D, int64_t Dp) {
  BwdKvScratch w;
  w.kf = scratch;
  w.vbuf = w.kf + kBK * D;
  w.pt = w.vbuf + kBK * D;
  w.dpt = w.pt + kBK * kBQ;
  w.tt = w.dpt + kBK * kBQ;
  w.row = w.tt + kBK * kBQ;
  w.dqacc = w.row + Dp;
  w.qt.q_t = w.dqacc + D * kBQ;
  w.qt.do_t = w.qt.q_t + D * kBQ;
  w.qt.q_r = w.qt.do_t + D * kBQ;
  w.qt.do_r = w.qt.q_r + kBQ * Dp;
  w.pb = reinterpret_cast<uint16_t*>(w.qt.do_r + kBQ * Dp);
  w.dsb = w.pb + kBK * kBQ;
  w.dsk = reinterpret_cast<uint32_t*>(w.dsb + kBK * kBQ);
  w.lq = reinterpret_cast<float*>(w.dsk + kBK / 2 * kBQ);
  w.dl = w.lq + kBQ;
  w.key_cache = w.dl + kBQ;
  return w;
}

// One key block's operands. Without kDot float32 rows k and v; with it the key and value rows
// as bf16 pairs along d (k2, v2: (nk, ceil(D / 2))) and the keys as bf16 pairs of consecutive
// keys (kk: (ceil(nk / 2), D), dq's product; the second half 0 past nk).
struct KeyTile {
  const float* k;
  int64_t ldk;
  const float* v;
  int64_t ldv;
  const uint32_t* k2;
  const uint32_t* v2;
  const uint32_t* kk;
};

// kDot: key block j0's operands into `dst` (cpu::attention_key_cache_floats(D, 1) floats), once
// per task: every query block of the task reuses them (converting them again for each query
// block took ~9% of a bf16 forward + backward at (1, 8, 2048, 64), measured on a busy machine).
template <typename T>
LLMK_ALWAYS_INLINE void convert_key_block(const cpu::AttentionBwdArgs& a, const T* kbase,
                                          const T* vbase, int64_t j0, int64_t nk, int64_t D,
                                          float* dst) {
  const int64_t Dh = (D + 1) / 2;
  uint32_t* kp = reinterpret_cast<uint32_t*>(dst);
  uint32_t* vp = kp + kBK * Dh;
  for (int64_t j = 0; j < nk; ++j) {
    const uint16_t* krow = reinterpret_cast<const uint16_t*>(kbase + (j0 + j) * a.ks.s);
    const uint16_t* vrow = reinterpret_cast<const uint16_t*>(vbase + (j0 + j) * a.vs.s);
    for (int64_t dp = 0; dp < Dh; ++dp) {
      const bool two = 2 * dp + 1 < D;
      kp[j * Dh + dp] = static_cast<uint32_t>(krow[2 * dp]) |
                        (two ? static_cast<uint32_t>(krow[2 * dp + 1]) << 16 : 0u);
      vp[j * Dh + dp] = static_cast<uint32_t>(vrow[2 * dp]) |
                        (two ? static_cast<uint32_t>(vrow[2 * dp + 1]) << 16 : 0u);
    }
  }
  uint32_t* kk = vp + kBK * Dh;
  for (int64_t jp = 0; jp < (nk + 1) / 2; ++jp) {
    const uint16_t* k0 = reinterpret_cast<const uint16_t*>(kbase + (j0 + 2 * jp) * a.ks.s);
    const bool two = 2 * jp + 1 < nk;
    const uint16_t* k1 = two ? reinterpret_cast<const uint16_t*>(kbase + (j0 + 2 * jp + 1) * a.ks.s) : k0;
    for (int64_t d = 0; d < D; ++d)
      kk[jp * D + d] = static_cast<uint32_t>(k0[d]) | (two ? static_cast<uint32_t>(k1[d]) << 16 : 0u);
  }
}

// The key tile from its key `j` on (j even).
template <bool kDot>
LLMK_ALWAYS_INLINE KeyTile shift_keys(const KeyTile& t, int64_t j, int64_t D) {
  KeyTile s = t;
  if constexpr (kDot) {
    const int64_t Dh = (D + 1) / 2;
    s.k2 = t.k2 + j * Dh;
    s.v2 = t.v2 + j * Dh;
    s.kk = t.kk + j / 2 * D;
  } else {
    s.k = t.k + j * t.ldk;
    s.v = t.v + j * t.ldv;
  }
  return s;
}

template <typename T, bool kDot>
LLMK_ALWAYS_INLINE KeyTile key_tile(const cpu::AttentionBwdArgs& a, const BwdKvScratch& w,
                                    const T* kbase, const T* vbase, int64_t j0, int64_t nk,
                                    int64_t D, int64_t cached_block) {
  KeyTile t{};
  if constexpr (kDot) {
    const int64_t Dh = (D + 1) / 2;
    const uint32_t* kp =
        reinterpret_cast<const uint32_t*>(w.key_cache + cached_block * cpu::attention_key_cache_floats(D, 1));
    t.k2 = kp;
    t.v2 = kp + kBK * Dh;
    t.kk = t.v2 + kBK * Dh;
  } else {
    t.k = tile_rows(kbase + j0 * a.ks.s, a.ks.s, nk, D, w.kf, &t.ldk);
    t.v = tile_rows(vbase + j0 * a.vs.s, a.vs.s, nk, D, w.vbuf, &t.ldv);
  }
  return t;
}
