// Backward of the attention CPU kernel (see attention_cpu_kernel_impl.h), three passes whose
// tasks are independent (workspace layouts: attention_cpu_kernel.h):
//   1. bwd_prep_task: q, dout (rows and transposed), lse and delta of one query block;
//   2. bwd_kv_task:   dk, dv of one key chunk of one kv head, and that chunk's dq contribution;
//   3. bwd_dq_task:   dq of one query block, the chunks' contributions summed in chunk order.
//
// With BwdDot (bf16, avx512bf16 level) S, dP and dv run on vdpbf16ps: q, dout, the key and value
// rows as bf16 pairs, P rounded to bf16, float32 accumulation. dS stays float32 and dk, dq keep
// the float32 FMA products: dS rounded to bf16 misses the 1e-2 tolerance on dq, dk for sharp
// softmaxes, and a (hi, lo) bf16 split of dS measured slower than FMA here.

// Pass 1. Scratch: three rows of Dp.
// Without BwdDot q_t / do_t hold (D, BQ) float32 and q_r / do_r (BQ, Dp) float32 rows. With it
// q_t / do_t hold (ceil(D / 2), BQ) bf16 pairs along d and do_r (BQ / 2, Dp) pairs along the
// queries; q_r stays float32 rows (dk's product keeps dS in float32). Zero padding elsewhere.
template <typename T>
void bwd_prep_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  constexpr bool kDot = BwdDot<T>::value;
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
  uint32_t* qv = reinterpret_cast<uint32_t*>(qt);
  uint32_t* dov = reinterpret_cast<uint32_t*>(dot);
  uint32_t* dop = reinterpret_cast<uint32_t*>(dor);
  fill(qr, kBQ * Dp, 0.0f);
  if constexpr (kDot) {
    const int64_t Dh = (D + 1) / 2;
    for (int64_t e = 0; e < Dh * kBQ; ++e) qv[e] = dov[e] = 0u;
    for (int64_t e = 0; e < kBQ / 2 * Dp; ++e) dop[e] = 0u;
  } else {
    fill(dor, kBQ * Dp, 0.0f);
  }
  for (int64_t r = 0; r < nq; ++r) {
    float* qrow = qr + r * Dp;
    float* drow = kDot ? scratch + Dp : dor + r * Dp;  // kDot: do_r holds pairs, not rows
    load_f32(qbase + (i0 + r) * a.qs.s, qrow, D);
    load_f32(dobase + (i0 + r) * a.dos.s, drow, D);
    load_f32(obase + (i0 + r) * a.os.s, orow, D);
    float delta = 0.0f;
    for (int64_t d = 0; d < D; ++d) delta += drow[d] * orow[d];
    const float lr = lse[i0 + r];
    const bool dead = lr == -__builtin_inff();
    lq[r] = dead ? __builtin_inff() : lr;
    dl[r] = dead ? 0.0f : delta;
    if constexpr (kDot) {
      const uint16_t* qs = reinterpret_cast<const uint16_t*>(qbase + (i0 + r) * a.qs.s);
      const uint16_t* ds = reinterpret_cast<const uint16_t*>(dobase + (i0 + r) * a.dos.s);
      const uint32_t rsh = static_cast<uint32_t>(16 * (r & 1));
      for (int64_t d = 0; d < D; ++d) {
        const uint32_t dsh = static_cast<uint32_t>(16 * (d & 1));
        qv[(d / 2) * kBQ + r] |= static_cast<uint32_t>(qs[d]) << dsh;
        dov[(d / 2) * kBQ + r] |= static_cast<uint32_t>(ds[d]) << dsh;
        dop[(r / 2) * Dp + d] |= static_cast<uint32_t>(ds[d]) << rsh;
      }
    } else {
      for (int64_t d = 0; d < D; ++d) {
        qt[d * kBQ + r] = qrow[d];
        dot[d * kBQ + r] = drow[d];
      }
    }
  }
  for (int64_t r = nq; r < kBQ; ++r) {
    lq[r] = __builtin_inff();
    dl[r] = 0.0f;
  }
  if constexpr (!kDot) {
    for (int64_t d = 0; d < D; ++d) {
      fill(qt + d * kBQ + nq, kBQ - nq, 0.0f);
      fill(dot + d * kBQ + nq, kBQ - nq, 0.0f);
    }
  }
}

// Pass 2 scratch: kf, vf (BK x D), dkacc, dvacc (BK x Dp), pt, dpt, tt (BK x BQ), row (Dp), and
// for BwdDot kr (BK x D) and pb (BK x BQ bf16).
struct BwdKvScratch {
  float *kf, *vbuf, *dkacc, *dvacc, *pt, *dpt, *tt, *row, *kr;
  uint16_t* pb;
};

LLMK_ALWAYS_INLINE BwdKvScratch bwd_kv_scratch(float* scratch, int64_t D, int64_t Dp) {
  BwdKvScratch w;
  w.kf = scratch;
  w.vbuf = w.kf + kBK * D;
  w.dkacc = w.vbuf + kBK * D;
  w.dvacc = w.dkacc + kBK * Dp;
  w.pt = w.dvacc + kBK * Dp;
  w.dpt = w.pt + kBK * kBQ;
  w.tt = w.dpt + kBK * kBQ;
  w.row = w.tt + kBK * kBQ;
  w.kr = w.row + Dp;
  w.pb = reinterpret_cast<uint16_t*>(w.kr + kBK * D);
  return w;
}

// One key block's operands. Float32 rows k (dq's product; S's too without kDot) and v; with kDot
// the key and value rows as bf16 pairs along d (k2, v2: (nk, ceil(D / 2)), in kf and vf).
struct KeyTile {
  const float* k;
  int64_t ldk;
  const float* v;
  int64_t ldv;
  const uint32_t* k2;
  const uint32_t* v2;
};

template <typename T, bool kDot>
LLMK_ALWAYS_INLINE KeyTile key_tile(const cpu::AttentionBwdArgs& a, const BwdKvScratch& w,
                                    const T* kbase, const T* vbase, int64_t j0, int64_t nk,
                                    int64_t D) {
  KeyTile t{};
  if constexpr (kDot) {
    const int64_t Dh = (D + 1) / 2;
    uint32_t* kp = reinterpret_cast<uint32_t*>(w.kf);
    uint32_t* vp = reinterpret_cast<uint32_t*>(w.vbuf);
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
    for (int64_t j = 0; j < nk; ++j) load_f32(kbase + (j0 + j) * a.ks.s, w.kr + j * D, D);
    t.k = w.kr;
    t.ldk = D;
    t.k2 = kp;
    t.v2 = vp;
  } else {
    t.k = tile_rows(kbase + j0 * a.ks.s, a.ks.s, nk, D, w.kf, &t.ldk);
    t.v = tile_rows(vbase + j0 * a.vs.s, a.vs.s, nk, D, w.vbuf, &t.ldv);
  }
  return t;
}

// One (query block qb of head h, key block j0) tile of pass 2: S, P, dP, dS, then
// dv += P^T.dout, dk += dS^T.q and this chunk's dq^T += k^T.dS.
template <typename T, bool kCap, bool kAlibi, bool kDot>
LLMK_ALWAYS_INLINE void bwd_kv_tile(const cpu::AttentionBwdArgs& a, const Geometry& g,
                                    const ScoreCtx& c, const KeyTile& kt,
                                    const BwdKvScratch& w, int64_t chunk, int64_t b, int64_t h,
                                    int64_t qb, int64_t j0, int64_t nk) {
  const int64_t D = g.D, Dp = g.Dp, Dh = (D + 1) / 2;
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
  for (int64_t v = 0; v < nv; ++v) {
    const vf lv = vload(lq + v * kLanes), dv = vload(dl + v * kLanes);
    for (int64_t j = 0; j < nk; ++j) {
      float* sp = w.pt + j * kBQ + v * kLanes;
      float* dp = w.dpt + j * kBQ + v * kLanes;
      const vf pv = vexp(vload(sp) - lv);
      if constexpr (kDot) store_bf16_row(w.pb + j * kBQ + v * kLanes, pv);
      else vstore(sp, pv);
      vf ds = pv * (vload(dp) - dv);
      if (kCap) {
        const vf th = vload(w.tt + j * kBQ + v * kLanes);
        ds = ds * (1.0f - th * th);
      }
      vstore(dp, ds);
    }
  }
  if constexpr (kDot)
    gemm<true>(nk, Dp, (nq + 1) / 2, reinterpret_cast<const uint32_t*>(w.pb), kBQ / 2, 1,
               reinterpret_cast<const uint32_t*>(dor), Dp, w.dvacc, Dp);
  else
    gemm<true>(nk, Dp, nq, w.pt, kBQ, 1, dor, Dp, w.dvacc, Dp);
  gemm<true>(nk, Dp, nq, w.dpt, kBQ, 1, qr, Dp, w.dkacc, Dp);
  gemm<true>(D, N, nk, kt.k, 1, kt.ldk, w.dpt, kBQ, dqt, kBQ);
}

// Pass 2: each key block of the chunk against every query block of the group's heads that can
// see it, in a fixed order (so dq's per-chunk sums are deterministic).
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
    fill(w.dkacc, nk * Dp, 0.0f);
    fill(w.dvacc, nk * Dp, 0.0f);
    int64_t ilo, ihi;
    query_range(g, j0, j0 + nk, &ilo, &ihi);
    if (ilo < ihi) {
      const KeyTile kt = key_tile<T, kDot>(a, w, kbase, vbase, j0, nk, D);
      for (int64_t gi = 0; gi < G; ++gi) {
        const int64_t h = hk * G + gi;
        const ScoreCtx c = score_ctx(p, b, h);
        for (int64_t qb = ilo / kBQ; qb <= (ihi - 1) / kBQ; ++qb)
          bwd_kv_tile<T, kCap, kAlibi, kDot>(a, g, c, kt, w, chunk, b, h, qb, j0, nk);
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      const float* src = w.dkacc + j * Dp;
      for (int64_t d = 0; d < D; ++d) w.row[d] = src[d] * p.scale;
      store_f32(w.row, dk_out + (j0 + j) * D, D);
      store_f32(w.dvacc + j * Dp, dv_out + (j0 + j) * D, D);
    }
  }
}

template <typename T>
void bwd_kv_dispatch(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  visit_flags(a.p.softcap > 0.0f, a.p.alibi != nullptr, [&](auto cap, auto alibi) {
    bwd_kv_task<T, decltype(cap)::value, decltype(alibi)::value>(a, task, scratch);
  });
}

// Pass 3: dq of one query block = scale * (sum over chunks, in chunk order).
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
