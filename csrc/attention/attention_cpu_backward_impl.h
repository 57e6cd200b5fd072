// Backward of the attention CPU kernel (see attention_cpu_kernel_impl.h), up to three passes
// whose tasks are independent (workspace layouts: attention_cpu_kernel.h):
//   1. bwd_prep_task: lse and delta of one query block;
//   2. bwd_kv_task:   dk, dv of one key chunk of one kv head, and that chunk's dq contribution
//                     (dq itself when there is one chunk);
//   3. bwd_dq_task:   dq of one query block, the chunks' contributions summed in chunk order.
// The workspace beyond per-thread scratch is lse/delta (two floats a query), float32 dk/dv
// accumulators only where the outputs cannot be their own, and dq partials only with key chunks.
//
// With BwdDot (bf16, avx512bf16 level) S, dP and dv run on vdpbf16ps: q, dout, the key and value
// rows as bf16 pairs, P rounded to bf16, float32 accumulation. dS stays float32 and dk, dq keep
// the float32 FMA products: dS rounded to bf16 misses the 1e-2 tolerance on dq, dk for sharp
// softmaxes, and a (hi, lo) bf16 split of dS measured slower than FMA here.

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
// along d and do_r (BQ / 2, Dp) pairs along the queries; q_r stays float32 rows (dk's product
// keeps dS in float32). Zero padding elsewhere. `drow`: one row of Dp.
struct QueryTile {
  float *q_t, *do_t, *q_r, *do_r, *drow;
};

template <typename T>
void load_query_tile(const cpu::AttentionBwdArgs& a, const Geometry& g, int64_t b, int64_t h,
                     int64_t i0, int64_t nq, const QueryTile& t) {
  constexpr bool kDot = BwdDot<T>::value;
  const int64_t D = g.D, Dp = g.Dp;
  const T* qbase = static_cast<const T*>(a.q) + b * a.qs.b + h * a.qs.h;
  const T* dobase = static_cast<const T*>(a.dout) + b * a.dos.b + h * a.dos.h;
  uint32_t* qv = reinterpret_cast<uint32_t*>(t.q_t);
  uint32_t* dov = reinterpret_cast<uint32_t*>(t.do_t);
  uint32_t* dop = reinterpret_cast<uint32_t*>(t.do_r);
  fill(t.q_r, kBQ * Dp, 0.0f);
  if constexpr (kDot) {
    const int64_t Dh = (D + 1) / 2;
    for (int64_t e = 0; e < Dh * kBQ; ++e) qv[e] = dov[e] = 0u;
    for (int64_t e = 0; e < kBQ / 2 * Dp; ++e) dop[e] = 0u;
  } else {
    fill(t.do_r, kBQ * Dp, 0.0f);
  }
  for (int64_t r = 0; r < nq; ++r) {
    float* qrow = t.q_r + r * Dp;
    float* drow = kDot ? t.drow : t.do_r + r * Dp;  // kDot: do_r holds pairs, not rows
    load_f32(qbase + (i0 + r) * a.qs.s, qrow, D);
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
      load_f32(dobase + (i0 + r) * a.dos.s, drow, D);
      for (int64_t d = 0; d < D; ++d) {
        t.q_t[d * kBQ + r] = qrow[d];
        t.do_t[d * kBQ + r] = drow[d];
      }
    }
  }
  if constexpr (!kDot) {
    for (int64_t d = 0; d < D; ++d) {
      fill(t.q_t + d * kBQ + nq, kBQ - nq, 0.0f);
      fill(t.do_t + d * kBQ + nq, kBQ - nq, 0.0f);
    }
  }
}

// Pass 2 scratch (attention_scratch_floats and, for bf16, attention_key_cache_floats in the
// glue count it): kf, vf (BK x D), pt, dpt, tt (BK x BQ), pb (BK x BQ bf16), row (Dp), the query tile
// (q_t, do_t: D x BQ; q_r, do_r: BQ x Dp; drow: Dp), dqacc (D x BQ, the block's dq^T over the
// chunk's keys) and, with BwdDot, key_cache: every key block of the chunk as a KeyTile's operands.
struct BwdKvScratch {
  float *kf, *vbuf, *pt, *dpt, *tt, *row, *dqacc, *key_cache;
  uint16_t* pb;
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
  w.qt.drow = w.qt.do_r + kBQ * Dp;
  w.pb = reinterpret_cast<uint16_t*>(w.qt.drow + Dp);
  w.key_cache = reinterpret_cast<float*>(w.pb + kBK * kBQ);
  return w;
}

// One key block's operands. Float32 rows k (dq's product; S's too without kDot) and v; with kDot
// the key and value rows as bf16 pairs along d (k2, v2: (nk, ceil(D / 2))).
struct KeyTile {
  const float* k;
  int64_t ldk;
  const float* v;
  int64_t ldv;
  const uint32_t* k2;
  const uint32_t* v2;
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
  float* kr = reinterpret_cast<float*>(vp + kBK * Dh);
  for (int64_t j = 0; j < nk; ++j) load_f32(kbase + (j0 + j) * a.ks.s, kr + j * D, D);
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
    t.k = reinterpret_cast<const float*>(t.v2 + kBK * Dh);
    t.ldk = D;
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
               reinterpret_cast<const uint32_t*>(dor), Dp, dvacc, Dp);
  else
    gemm<true>(nk, Dp, nq, w.pt, kBQ, 1, dor, Dp, dvacc, Dp);
  gemm<true>(nk, Dp, nq, w.dpt, kBQ, 1, qr, Dp, dkacc, Dp);
  gemm<true>(D, N, nk, kt.k, 1, kt.ldk, w.dpt, kBQ, w.dqacc, kBQ);
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
