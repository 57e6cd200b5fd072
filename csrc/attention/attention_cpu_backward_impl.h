// Backward of the attention CPU kernel (see attention_cpu_kernel_impl.h), up to two passes whose
// tasks are independent (workspace layouts: attention_cpu_kernel.h):
//   1. bwd_kv_task: dk, dv of one key chunk of one kv head, and that chunk's dq contribution (dq
//                   itself when there is one chunk);
//   2. bwd_dq_task: dq of one query block, the chunks' contributions summed in chunk order.
// The workspace beyond per-thread scratch is float32 dk/dv accumulators only where the outputs
// cannot be their own, and dq partials only with key chunks. Each query block's lse and delta are
// formed by the key pass as it visits the block (a pass of their own ran on one thread: below the
// work that wakes a second, ~6% of the training shape's two-thread bf16 backward), once per key
// chunk that sees the block (D multiply-adds a query against 5 * D per visible key).
//
// With BwdDot (bf16, avx512bf16 level) all five products run on vdpbf16ps (twice the multiply-adds
// of a float32 FMA per instruction): q, dout, the key and value rows as bf16 pairs, P and dS
// rounded to bf16 (nearest even), float32 accumulation, as GPU flash kernels do. Rounding dS costs
// dq, dk at most ~4e-3 of the tensor's scale against the float32-math spec: emulated in float64
// over 300 draws of the tests' sharpest case (33 x 70 x 128, scale 0.3), the worst dq, dk error
// with the bf16 output rounding was 6.2e-3 of the 1e-2 tolerance; with sharper scores (q, k ~ 10x)
// it stayed below 3.5e-3 (the (hi, lo) split that the float32 products need costs as much as FMA).

// The lse (lq: +inf where the row sees no key and on padding) and delta = rowsum(dout * out) (dl:
// 0 there) of the query block [i0, i0 + nq) of (b, h). `scratch`: two rows of Dp.
template <typename T>
void block_lse_delta(const cpu::AttentionBwdArgs& a, const Geometry& g, int64_t b, int64_t h,
                     int64_t i0, int64_t nq, float* lq, float* dl, float* scratch) {
  float* orow = scratch;
  float* drow = scratch + g.Dp;
  const T* obase = static_cast<const T*>(a.out) + b * a.os.b + h * a.os.h;
  const T* dobase = static_cast<const T*>(a.dout) + b * a.dos.b + h * a.dos.h;
  const float* lse = a.lse + (b * g.Hq + h) * g.Sq;
  // Vector partial sums over d (a scalar chain over d took ~4% of the training shape's bf16
  // backward); the rows' padding to Dp stays 0.
  fill(orow + g.D, g.Dp - g.D, 0.0f);
  fill(drow + g.D, g.Dp - g.D, 0.0f);
  for (int64_t r = 0; r < nq; ++r) {
    load_f32(dobase + (i0 + r) * a.dos.s, drow, g.D);
    load_f32(obase + (i0 + r) * a.os.s, orow, g.D);
    vf acc = vf{};
    for (int64_t d = 0; d < g.Dp; d += kLanes) acc = vfma(vload(drow + d), vload(orow + d), acc);
    const float delta = hsum(acc);
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

// One tile of pass 1: queries [i0 + qo, i0 + nq) of the query block at i0 of head h (qo a
// multiple of 16: the block's tile from lane qo on) against keys [j0, j0 + nk): S, P, dP, dS,
// then dv += P^T.dout, dk += dS^T.q (rows of dkacc / dvacc, stride Dp) and the block's
// dq^T += k^T.dS (its lanes from qo on).
template <typename T, bool kCap, bool kAlibi, bool kDot>
LLMK_ALWAYS_INLINE void bwd_kv_tile(const cpu::AttentionBwdArgs& a, const Geometry& g,
                                    const ScoreCtx& c, const KeyTile& kt, const BwdKvScratch& w,
                                    int64_t i0_block, int64_t nq_block, int64_t qo,
                                    int64_t j0, int64_t nk, float* dkacc, float* dvacc) {
  const int64_t D = g.D, Dp = g.Dp, Dh = (D + 1) / 2;
  const int64_t i0 = i0_block + qo, nq = nq_block - qo;
  const int64_t N = round16(nq), nv = N / kLanes;
  // Lane qo of the (.., BQ) layouts; row qo (float32) or pair row qo / 2 (kDot) of the (BQ, Dp) ones.
  const float* qt = w.qt.q_t + qo;
  const float* dot = w.qt.do_t + qo;
  const float* qr = w.qt.q_r + (kDot ? qo / 2 : qo) * Dp;
  const float* dor = w.qt.do_r + (kDot ? qo / 2 : qo) * Dp;
  const float* lq = w.lq + qo;
  const float* dl = w.dl + qo;
  float* dqacc = w.dqacc + qo;

  if constexpr (kDot)
    gemm<false>(nk, N, Dh, kt.k2, Dh, 1, reinterpret_cast<const uint32_t*>(qt), kBQ, w.pt, kBQ);
  else
    gemm<false>(nk, N, D, kt.k, kt.ldk, 1, qt, kBQ, w.pt, kBQ);
  // Fused (scores_fused): pt keeps the raw q.k, the scale going into P's exponent.
  const bool fused = scores_fused(kCap, kAlibi, a.p.scale);
  const bool mask = !tile_unmasked(g, i0, i0 + nq, j0, j0 + nk, c.kpm_row);
  if (!fused || mask) {
    ScoreCtx cm = c;
    if (fused) cm.scale = 1.0f;  // only the masks are written
    score_tile<kCap, kAlibi>(cm, mask, w.pt, w.tt, nk, nv, i0, g.off, j0);
  }
  const vf c2 = vsplat(fused ? a.p.scale * kLog2e : kLog2e);
  if constexpr (kDot)
    gemm<false>(nk, N, Dh, kt.v2, Dh, 1, reinterpret_cast<const uint32_t*>(dot), kBQ, w.dpt, kBQ);
  else
    gemm<false>(nk, N, D, kt.v, kt.ldv, 1, dot, kBQ, w.dpt, kBQ);
  if constexpr (kDot) {
    // P and dS as bf16: rows (pairs along the queries) for dv and dk, and dS as pairs of
    // consecutive keys for dq (the second half 0 past nk, as the keys' pairs).
    for (int64_t v = 0; v < nv; ++v) {
      const vf lv = vload(lq + v * kLanes) * kLog2e, dv = vload(dl + v * kLanes);
      for (int64_t j = 0; j < nk; j += 2) {
        vf ds[2] = {vf{}, vf{}};
        for (int64_t u = 0; u < 2 && j + u < nk; ++u) {
          const int64_t e = (j + u) * kBQ + v * kLanes;
          const vf pv = vexp2_softmax(vfma(vload(w.pt + e), c2, -lv));
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
    gemm<true>(D, N, nkp, kt.kk, 1, D, w.dsk, kBQ, dqacc, kBQ);
  } else {
    for (int64_t v = 0; v < nv; ++v) {
      const vf lv = vload(lq + v * kLanes) * kLog2e, dv = vload(dl + v * kLanes);
      for (int64_t j = 0; j < nk; ++j) {
        float* sp = w.pt + j * kBQ + v * kLanes;
        float* dp = w.dpt + j * kBQ + v * kLanes;
        const vf pv = vexp2_softmax(vfma(vload(sp), c2, -lv));
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
    gemm<true>(D, N, nk, kt.k, 1, kt.ldk, w.dpt, kBQ, dqacc, kBQ);
  }
}

// dq rows [i0, i0 + nq) of (b, h) = scale * acc^T (acc: D x BQ), in the output's dtype; `buf`
// (kBQ x D floats) takes acc as rows by 16 x 16 blocks when D is a multiple of 16.
template <typename T>
LLMK_ALWAYS_INLINE void store_dq_rows(const cpu::AttentionBwdArgs& a, const Geometry& g,
                                      int64_t bh, int64_t i0, int64_t nq, const float* acc,
                                      float* row, float* buf) {
  T* dq = static_cast<T*>(a.dq) + (bh * g.Sq + i0) * g.D;
  const bool blocks = g.D % kLanes == 0;
  if (blocks) lanes_to_rows(acc, nq, g.D, buf);
  for (int64_t r = 0; r < nq; ++r) {
    float* out = blocks ? buf + r * g.D : row;
    if (blocks)
      for (int64_t d = 0; d < g.D; d += kLanes) vstore(out + d, vload(out + d) * a.p.scale);
    else
      for (int64_t d = 0; d < g.D; ++d) out[d] = acc[d * kBQ + r] * a.p.scale;
    store_f32(out, dq + r * g.D, g.D);
  }
}

// Pass 1, one task per (key chunk, b, kv head): every query block of the group's heads, in a
// fixed order, against the chunk's key blocks that it sees. dk, dv of the chunk's keys accumulate
// over the whole task in dk_acc / dv_acc (the float32 outputs themselves where they can be); the
// block's dq over the chunk's keys goes straight to dq when there is one chunk, else to the
// chunk's slot of dq_t (summed in chunk order by pass 2). Per key block, the contributions arrive
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
        block_lse_delta<T>(a, g, b, h, i0, nq, w.lq, w.dl, w.kf);  // kf: free until the key tiles
        load_query_tile<T>(a, g, b, h, i0, nq, w.qt);
        for (int64_t kb = jlo / kBK; kb <= (jhi - 1) / kBK; ++kb) {
          // Keys from jhi on are masked for every query of the block: not visited.
          const int64_t j0 = kb * kBK, nk = min_i64(kBK, jhi - j0);
          const KeyTile kt = key_tile<T, kDot>(a, w, kbase, vbase, j0, nk, D, kb - kb_first);
          float* dka = dk_acc + (j0 - j_begin) * Dp;
          float* dva = dv_acc + (j0 - j_begin) * Dp;
          // Causal, at the diagonal: keys from j0 + kHalf on are masked for the block's first
          // kHalf queries. Two half tiles skip that quadrant (a quarter of the tile's products;
          // ~4% of the training shape's causal backward, S = 512 and eight query blocks a head).
          if (g.causal && nk > kHalf && nq > kHalf && j0 >= i0 + g.off) {
            bwd_kv_tile<T, kCap, kAlibi, kDot>(a, g, c, kt, w, i0, nq, 0, j0, kHalf, dka, dva);
            bwd_kv_tile<T, kCap, kAlibi, kDot>(a, g, c, shift_keys<kDot>(kt, kHalf, D), w, i0,
                                               nq, kHalf, j0 + kHalf, nk - kHalf,
                                               dka + kHalf * Dp, dva + kHalf * Dp);
          } else {
            bwd_kv_tile<T, kCap, kAlibi, kDot>(a, g, c, kt, w, i0, nq, 0, j0, nk, dka, dva);
          }
        }
      }
      if (a.num_chunks == 1) {
        store_dq_rows<T>(a, g, bh, i0, nq, w.dqacc, w.row, w.kf);  // kf: free between key tiles
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

// Pass 2 (only with more than one key chunk): dq of one query block = scale * (sum over
// chunks, in chunk order). Scratch: acc (D x BQ), row (Dp), store_dq_rows' buffer (BQ x D).
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
  store_dq_rows<T>(a, g, bh, i0, nq, acc, acc + tile, acc + tile + g.Dp);
}
