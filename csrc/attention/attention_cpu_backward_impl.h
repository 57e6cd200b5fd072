// Backward of the attention CPU kernel (see attention_cpu_kernel_impl.h), up to three passes
// whose tasks are independent (workspace layouts: attention_cpu_kernel.h):
//   1. bwd_prep_task: lse and delta of one query block;
//   2. bwd_kv_task:   dk, dv of one key chunk of one kv head, and that chunk's dq contribution
//                     (dq itself when there is one chunk);
//   3. bwd_dq_task:   dq of one query block, the chunks' contributions summed in chunk order.
// The workspace beyond per-thread scratch is lse/delta (two floats a query), float32 dk/dv
// accumulators only where the outputs cannot be their own, and dq partials only with key chunks.
//
// With BwdDot (bf16, avx512bf16 level) all five products run on vdpbf16ps (twice the multiply-adds
// of a float32 FMA per instruction): q, dout, the key and value rows as bf16 pairs, P and dS
// rounded to bf16 (nearest even), float32 accumulation, as GPU flash kernels do. Rounding dS costs
// dq, dk at most ~4e-3 of the tensor's scale against the float32-math spec: emulated in float64
// over 300 draws of the tests' sharpest case (33 x 70 x 128, scale 0.3), the worst dq, dk error
// with the bf16 output rounding was 6.2e-3 of the 1e-2 tolerance; with sharper scores (q, k ~ 10x)
// it stayed below 3.5e-3 (the (hi, lo) split that the float32 products need costs as much as FMA).

// Pass 1: lse and delta = rowsum(dout * out) of one query block. Scratch: two rows of Dp.
template <typename T>
void bwd_prep_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  const Geometry g = geometry(a.p);
  const int64_t blk = task;
  const int64_t bh = blk / g.nQb, qb = blk % g.nQb;
  const int64_t b = bh / g.Hq, h = bh % g.Hq;
  const int64_t i0 = qb * kBQ, nq = min_i64(kBQ, g.Sq - i0);
  float* lq = a.lse_q + blk * kBQ;
  float* dl = a.delta + blk * kBQ;
  float* orow = scratch;
  float* drow = scratch + g.Dp;
  const T* obase = static_cast<const T*>(a.out) + b * a.os.b + h * a.os.h;
  const T* dobase = static_cast<const T*>(a.dout) + b * a.dos.b + h * a.dos.h;
  const float* lse = a.lse + (b * g.Hq + h) * g.Sq;
  for (int64_t r = 0; r < nq; ++r) {
    load_f32(dobase + (i0 + r) * a.dos.s, drow, g.D);
    load_f32(obase + (i0 + r) * a.os.s, orow, g.D);
    float delta = 0.0f;
    for (int64_t d = 0; d < g.D; ++d) delta += drow[d] * orow[d];
    const float lr = lse[i0 + r];
    const bool dead = lr == -__builtin_inff();
    lq[r] = dead ? __builtin_inff() : lr;
    dl[r] = dead ? 0.0f : delta;
  }
  for (int64_t r = nq; r < kBQ; ++r) {
    lq[r] = __builtin_inff();
    dl[r] = 0.0f;
  }
}

// One query block's operands of pass 2, built in the task's scratch when the block is visited
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

// Pass 2 scratch (attention_scratch_floats and, for bf16, attention_key_cache_floats in the
// glue count it): kf, vf (BK x D), pt, dpt, tt (BK x BQ), row (Dp), dqacc (D x BQ, the block's
// dq^T over the chunk's keys), the query tile (q_t, do_t: D x BQ; q_r, do_r: BQ x Dp), the bf16
// operands of BwdDot (pb, dsb: P and dS as BK x BQ bf16 rows, pairs along the queries; dsk: dS as
// BK / 2 x BQ pairs of consecutive keys) and, with BwdDot, key_cache: every key block of the
// chunk as a KeyTile's operands.
struct BwdKvScratch {
  float *kf, *vbuf, *pt, *dpt, *tt, *row, *dqacc, *key_cache;
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
  w.key_cache = reinterpret_cast<float*>(w.dsk + kBK / 2 * kBQ);
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

// One (query block at i0 of head h, key block j0) tile of pass 2: S, P, dP, dS, then
// dv += P^T.dout, dk += dS^T.q (rows of dkacc / dvacc, stride Dp) and the block's dq^T += k^T.dS.
template <typename T, bool kCap, bool kAlibi, bool kDot>
LLMK_ALWAYS_INLINE void bwd_kv_tile(const cpu::AttentionBwdArgs& a, const Geometry& g,
                                    const ScoreCtx& c, const KeyTile& kt,
                                    const BwdKvScratch& w, int64_t blk, int64_t i0, int64_t nq,
                                    int64_t j0, int64_t nk, float* dkacc, float* dvacc) {
  const int64_t D = g.D, Dp = g.Dp, Dh = (D + 1) / 2;
  const int64_t N = round16(nq), nv = N / kLanes;
  const float* qt = w.qt.q_t;
  const float* dot = w.qt.do_t;
  const float* qr = w.qt.q_r;
  const float* dor = w.qt.do_r;
  const float* lq = a.lse_q + blk * kBQ;
  const float* dl = a.delta + blk * kBQ;

  if constexpr (kDot)
    gemm<false>(nk, N, Dh, kt.k2, Dh, 1, reinterpret_cast<const uint32_t*>(qt), kBQ, w.pt, kBQ);
  else
    gemm<false>(nk, N, D, kt.k, kt.ldk, 1, qt, kBQ, w.pt, kBQ);
  const bool mask = !tile_unmasked(g, i0, i0 + nq, j0, j0 + nk, c.kpm_row);
  score_tile<kCap, kAlibi>(c, mask, w.pt, w.tt, nk, nv, i0, g.off, j0);
  if constexpr (kDot)
    gemm<false>(nk, N, Dh, kt.v2, Dh, 1, reinterpret_cast<const uint32_t*>(dot), kBQ, w.dpt, kBQ);
  else
    gemm<false>(nk, N, D, kt.v, kt.ldv, 1, dot, kBQ, w.dpt, kBQ);
  if constexpr (kDot) {
    // P and dS as bf16: rows (pairs along the queries) for dv and dk, and dS as pairs of
    // consecutive keys for dq (the second half 0 past nk, as the keys' pairs).
    for (int64_t v = 0; v < nv; ++v) {
      const vf lv = vload(lq + v * kLanes), dv = vload(dl + v * kLanes);
      for (int64_t j = 0; j < nk; j += 2) {
        vf ds[2] = {vf{}, vf{}};
        for (int64_t u = 0; u < 2 && j + u < nk; ++u) {
          const int64_t e = (j + u) * kBQ + v * kLanes;
          const vf pv = vexp(vload(w.pt + e) - lv);
          store_bf16_row(w.pb + e, pv);
          ds[u] = pv * (vload(w.dpt + e) - dv);
          if (kCap) {
            const vf th = vload(w.tt + e);
            ds[u] = ds[u] * (1.0f - th * th);
          }
          store_bf16_row(w.dsb + e, ds[u]);
        }
        vstore(reinterpret_cast<float*>(w.dsk + (j / 2) * kBQ + v * kLanes),
               (vf)pack_bf16_pair(ds[0], ds[1]));
      }
    }
    const int64_t nqp = (nq + 1) / 2, nkp = (nk + 1) / 2;
    gemm<true>(nk, Dp, nqp, reinterpret_cast<const uint32_t*>(w.pb), kBQ / 2, 1,
               reinterpret_cast<const uint32_t*>(dor), Dp, dvacc, Dp);
    gemm<true>(nk, Dp, nqp, reinterpret_cast<const uint32_t*>(w.dsb), kBQ / 2, 1,
               reinterpret_cast<const uint32_t*>(qr), Dp, dkacc, Dp);
    gemm<true>(D, N, nkp, kt.kk, 1, D, w.dsk, kBQ, w.dqacc, kBQ);
  } else {
    for (int64_t v = 0; v < nv; ++v) {
      const vf lv = vload(lq + v * kLanes), dv = vload(dl + v * kLanes);
      for (int64_t j = 0; j < nk; ++j) {
        float* sp = w.pt + j * kBQ + v * kLanes;
        float* dp = w.dpt + j * kBQ + v * kLanes;
        const vf pv = vexp(vload(sp) - lv);
        vstore(sp, pv);
        vf ds = pv * (vload(dp) - dv);
        if (kCap) {
          const vf th = vload(w.tt + j * kBQ + v * kLanes);
          ds = ds * (1.0f - th * th);
        }
        vstore(dp, ds);
      }
    }
    gemm<true>(nk, Dp, nq, w.pt, kBQ, 1, dor, Dp, dvacc, Dp);
    gemm<true>(nk, Dp, nq, w.dpt, kBQ, 1, qr, Dp, dkacc, Dp);
    gemm<true>(D, N, nk, kt.k, 1, kt.ldk, w.dpt, kBQ, w.dqacc, kBQ);
  }
}

// dq rows [i0, i0 + nq) of (b, h) = scale * acc^T (acc: D x BQ), in the output's dtype.
template <typename T>
LLMK_ALWAYS_INLINE void store_dq_rows(const cpu::AttentionBwdArgs& a, const Geometry& g,
                                      int64_t bh, int64_t i0, int64_t nq, const float* acc,
                                      float* row) {
  T* dq = static_cast<T*>(a.dq) + (bh * g.Sq + i0) * g.D;
  for (int64_t r = 0; r < nq; ++r) {
    for (int64_t d = 0; d < g.D; ++d) row[d] = acc[d * kBQ + r] * a.p.scale;
    store_f32(row, dq + r * g.D, g.D);
  }
}

// Pass 2, one task per (key chunk, b, kv head): every query block of the group's heads, in a
// fixed order, against the chunk's key blocks that it sees. dk, dv of the chunk's keys accumulate
// over the whole task in dk_acc / dv_acc (the float32 outputs themselves where they can be); the
// block's dq over the chunk's keys goes straight to dq when there is one chunk, else to the
// chunk's slot of dq_t (summed in chunk order by pass 3). Per key block, the contributions arrive
// in (head, query block) order, and per query block in key block order: deterministic.
template <typename T, bool kCap, bool kAlibi>
void bwd_kv_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  constexpr bool kDot = BwdDot<T>::value;
  const cpu::AttentionParams& p = a.p;
  const Geometry g = geometry(p);
  const int64_t BHk = g.B * g.Hkv;
  const int64_t chunk = task / BHk, bhk = task % BHk;
  const int64_t b = bhk / g.Hkv, hk = bhk % g.Hkv;
  const int64_t G = g.Hq / g.Hkv;
  const int64_t D = g.D, Dp = g.Dp;
  const BwdKvScratch w = bwd_kv_scratch(scratch, D, Dp);

  const int64_t j_begin = chunk * a.chunk_blocks * kBK;
  const int64_t j_end = min_i64(g.Sk, j_begin + a.chunk_blocks * kBK);
  if (j_begin >= j_end) return;
  float* dk_acc = a.dk_acc + (bhk * g.Sk + j_begin) * Dp;
  float* dv_acc = a.dv_acc + (bhk * g.Sk + j_begin) * Dp;
  fill(dk_acc, (j_end - j_begin) * Dp, 0.0f);
  fill(dv_acc, (j_end - j_begin) * Dp, 0.0f);

  const T* kbase = static_cast<const T*>(a.k) + b * a.ks.b + hk * a.ks.h;
  const T* vbase = static_cast<const T*>(a.v) + b * a.vs.b + hk * a.vs.h;
  const int64_t kb_first = j_begin / kBK;
  if constexpr (kDot) {
    for (int64_t kb = kb_first; kb <= (j_end - 1) / kBK; ++kb) {
      const int64_t j0 = kb * kBK;
      convert_key_block<T>(a, kbase, vbase, j0, min_i64(kBK, g.Sk - j0), D,
                           w.key_cache + (kb - kb_first) * cpu::attention_key_cache_floats(D, 1));
    }
  }
  for (int64_t gi = 0; gi < G; ++gi) {
    const int64_t h = hk * G + gi, bh = b * g.Hq + h;
    const ScoreCtx c = score_ctx(p, b, h);
    for (int64_t qb = 0; qb < g.nQb; ++qb) {
      const int64_t blk = bh * g.nQb + qb;
      const int64_t i0 = qb * kBQ, nq = min_i64(kBQ, g.Sq - i0);
      int64_t jlo, jhi;
      key_range(g, i0, i0 + nq, &jlo, &jhi);
      jlo = max_i64(jlo, j_begin);
      jhi = min_i64(jhi, j_end);
      fill(w.dqacc, D * kBQ, 0.0f);
      if (jlo < jhi) {
        load_query_tile<T>(a, g, b, h, i0, nq, w.qt);
        for (int64_t kb = jlo / kBK; kb <= (jhi - 1) / kBK; ++kb) {
          const int64_t j0 = kb * kBK, nk = min_i64(kBK, g.Sk - j0);
          const KeyTile kt = key_tile<T, kDot>(a, w, kbase, vbase, j0, nk, D, kb - kb_first);
          bwd_kv_tile<T, kCap, kAlibi, kDot>(a, g, c, kt, w, blk, i0, nq, j0, nk,
                                             dk_acc + (j0 - j_begin) * Dp,
                                             dv_acc + (j0 - j_begin) * Dp);
        }
      }
      if (a.num_chunks == 1) {
        store_dq_rows<T>(a, g, bh, i0, nq, w.dqacc, w.row);
      } else {
        float* slot = a.dq_t + (chunk * g.B * g.Hq * g.nQb + blk) * D * kBQ;
        for (int64_t e = 0; e < D * kBQ; ++e) slot[e] = w.dqacc[e];
      }
    }
  }
  // In place when the accumulators are the float32 outputs themselves (then Dp == D).
  const bool in_place = static_cast<const void*>(a.dv_acc) == a.dv;
  T* dk_out = static_cast<T*>(a.dk) + bhk * g.Sk * D;
  T* dv_out = static_cast<T*>(a.dv) + bhk * g.Sk * D;
  for (int64_t j = j_begin; j < j_end; ++j) {
    const float* src = dk_acc + (j - j_begin) * Dp;
    for (int64_t d = 0; d < D; ++d) w.row[d] = src[d] * p.scale;
    store_f32(w.row, dk_out + j * D, D);
    if (!in_place) store_f32(dv_acc + (j - j_begin) * Dp, dv_out + j * D, D);
  }
}

template <typename T>
void bwd_kv_dispatch(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  visit_flags(a.p.softcap > 0.0f, a.p.alibi != nullptr, [&](auto cap, auto alibi) {
    bwd_kv_task<T, decltype(cap)::value, decltype(alibi)::value>(a, task, scratch);
  });
}

// Pass 3 (only with more than one key chunk): dq of one query block = scale * (sum over
// chunks, in chunk order). Scratch: acc (D x BQ), row (Dp).
template <typename T>
void bwd_dq_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  const Geometry g = geometry(a.p);
  const int64_t blk = task;
  const int64_t i0 = (blk % g.nQb) * kBQ, bh = blk / g.nQb;
  const int64_t nq = min_i64(kBQ, g.Sq - i0);
  const int64_t tile = g.D * kBQ;
  const int64_t chunk_stride = g.B * g.Hq * g.nQb * tile;
  float* acc = scratch;
  const float* src = a.dq_t + blk * tile;
  for (int64_t e = 0; e < tile; ++e) acc[e] = src[e];
  for (int64_t ch = 1; ch < a.num_chunks; ++ch) {
    const float* s2 = src + ch * chunk_stride;
    for (int64_t e = 0; e < tile; ++e) acc[e] += s2[e];
  }
  store_dq_rows<T>(a, g, bh, i0, nq, acc, acc + tile);
}
