// Forward of the attention CPU kernel (see attention_cpu_kernel_impl.h): one query block of one
// head per task, an online softmax over its visible key blocks.
// Scratch: qt (D x BQ), st (BK x BQ), ot (D x BQ), kf (BK x D), vf (BK x D), row (Dp), then the
// kDot path's P pairs ((BK / 2) x BQ).

// One query row against its keys (decoding, one query per head): the tiled path below would fill
// 1 of its 16 query lanes and pay a fixed cost per task (zeroing the D x BQ query and output tiles,
// 16-lane products per key block) far above the work of a few dozen keys. Here the lanes run along
// the head dimension: per chunk of up to kBK keys, a dot product per key, the exponentials of the
// chunk 16 at a time (vexp), then an axpy per key. Only for scores without
// softcap or ALiBi whose visible keys form one range that needs no per-element mask (a lone query
// sees a contiguous range); returns false, leaving the task to the tiled path, otherwise.
// Scratch: 4 x Dp + kBK floats.
template <typename T>
bool fwd_single_query(const cpu::AttentionFwdArgs& a, const Geometry& g, int64_t b, int64_t h,
                      int64_t i0, const T* qbase, const T* kbase, const T* vbase, float* scratch) {
  const ScoreCtx c = score_ctx(a.p, b, h);
  int64_t lo, hi;
  key_range(g, i0, i0 + 1, &lo, &hi);
  if (lo >= hi || !tile_unmasked(g, i0, i0 + 1, lo, hi, c.kpm_row)) return false;
  const int64_t D = g.D, Dp = g.Dp, nv = Dp / kLanes;
  float* q = scratch;
  float* acc = q + Dp;
  float* kr = acc + Dp;
  float* vr = kr + Dp;
  float* sc = vr + Dp;  // the chunk's scores, then its exponentials
  // Rows are read into zero-padded buffers (no read past a row's D elements); fp32 rows of a
  // multiple of 16 elements are read in place.
  fill(q + D, Dp - D, 0.0f);
  fill(kr + D, Dp - D, 0.0f);
  fill(vr + D, Dp - D, 0.0f);
  fill(acc, Dp, 0.0f);
  load_f32(qbase + i0 * a.qs.s, q, D);
  bool direct = false;
  if constexpr (IsF32<T>::value) direct = D == Dp;
  // Row j of a key or value head as float32: in place, or converted into `buf`.
  const auto row_f32 = [&](const T* base, int64_t stride, int64_t j, float* buf) -> const float* {
    if (direct) return reinterpret_cast<const float*>(base + j * stride);
    load_f32(base + j * stride, buf, D);
    return buf;
  };
  float m = -__builtin_inff(), l = 0.0f;
  for (int64_t j0 = lo; j0 < hi; j0 += kBK) {
    const int64_t nk = min_i64(kBK, hi - j0), nkv = round16(nk) / kLanes;
    float mx = m;
    for (int64_t j = 0; j < nk; ++j) {
      const float* kp = row_f32(kbase, a.ks.s, j0 + j, kr);
      vf dot = vf{};
      for (int64_t v = 0; v < nv; ++v) dot = vfma(vload(q + v * kLanes), vload(kp + v * kLanes), dot);
      sc[j] = hsum(dot) * c.scale;
      mx = sc[j] > mx ? sc[j] : mx;
    }
    fill(sc + nk, nkv * kLanes - nk, -__builtin_inff());
    const vf msafe = vsplat(mx == -__builtin_inff() ? 0.0f : mx);
    const vf alpha = vexp(vsplat(m) - msafe);
    vf sum = vf{};
    for (int64_t v = 0; v < nkv; ++v) {
      const vf e = vexp(vload(sc + v * kLanes) - msafe);
      vstore(sc + v * kLanes, e);
      sum += e;
    }
    m = mx;
    l = l * alpha[0] + hsum(sum);
    for (int64_t v = 0; v < nv; ++v) vstore(acc + v * kLanes, vload(acc + v * kLanes) * alpha);
    for (int64_t j = 0; j < nk; ++j) {
      const float* vp = row_f32(vbase, a.vs.s, j0 + j, vr);
      const vf pj = vsplat(sc[j]);
      for (int64_t v = 0; v < nv; ++v) {
        float* ap = acc + v * kLanes;
        vstore(ap, vfma(pj, vload(vp + v * kLanes), vload(ap)));
      }
    }
  }
  const float inv = 1.0f / l;  // l >= 1 for finite scores: the largest contributes exp(0)
  for (int64_t d = 0; d < D; ++d) acc[d] *= inv;
  a.lse[(b * g.Hq + h) * g.Sq + i0] = m + __builtin_logf(l);
  store_f32(acc, static_cast<T*>(a.out) + b * a.os.b + h * a.os.h + i0 * a.os.s, D);
  return true;
}

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
  if constexpr (!kCap && !kAlibi && !kDot) {
    if (nq == 1 && fwd_single_query<T>(a, g, b, h, i0, qbase, kbase, vbase, scratch)) return;
  }

  if constexpr (kDot) {
    const int64_t Dh = D / 2;
    if (Dh % 16 == 0) {
      load_word_columns(reinterpret_cast<const char*>(qbase + i0 * a.qs.s), a.qs.s * 2, nq, Dh, qv);
    } else {
      for (int64_t r = 0; r < nq; ++r) {
        uint32_t qrow[512];
        __builtin_memcpy(qrow, qbase + (i0 + r) * a.qs.s, static_cast<uint64_t>(D) * 2);
        for (int64_t dp = 0; dp < Dh; ++dp) qv[dp * kBQ + r] = qrow[dp];
      }
      for (int64_t dp = 0; dp < Dh; ++dp)
        for (int64_t r = nq; r < kBQ; ++r) qv[dp * kBQ + r] = 0u;
    }
  } else if (IsF32<T>::value && D % kLanes == 0) {
    // By 16 x 16 blocks: element by element this transpose took ~7% of the fp32 forward.
    load_word_columns(reinterpret_cast<const char*>(qbase + i0 * a.qs.s), a.qs.s * 4, nq, D,
                      reinterpret_cast<uint32_t*>(qt));
  } else {
    for (int64_t r = 0; r < nq; ++r) {
      load_f32(qbase + (i0 + r) * a.qs.s, row, D);
      for (int64_t d = 0; d < D; ++d) qt[d * kBQ + r] = row[d];
    }
    for (int64_t d = 0; d < D; ++d) fill(qt + d * kBQ + nq, kBQ - nq, 0.0f);
  }

  const ScoreCtx c = score_ctx(p, b, h);
  // Fused: st holds the raw q.k (scores_fused); else the final scores. Either way the exponent
  // of a score u is u * c2 minus the row's base-2 offset (c2 > 0, so the max of u gives it).
  const bool fused = scores_fused(kCap, kAlibi, p.scale);
  ScoreCtx cm = c;
  if (fused) cm.scale = 1.0f;  // score_tile then only writes the masks
  const float c2 = fused ? p.scale * kLog2e : kLog2e;
  const vf c2v = vsplat(c2);
  const vf neg_inf = vsplat(-__builtin_inff());
  vf m[kBQ / kLanes], l[kBQ / kLanes];
  for (int64_t v = 0; v < kBQ / kLanes; ++v) {
    m[v] = neg_inf;
    l[v] = vf{};
  }

  int64_t lo, hi;
  key_range(g, i0, i0 + nq, &lo, &hi);
  // The first key block writes the output tile instead of rescaling and adding to it (no pass
  // that zeroes it first; its alpha is 0 against a tile of 0, so the sums are the same).
  // Lanes that no block reaches are never read as output: their l stays 0.
  for (int64_t j0 = lo / kBK * kBK; j0 < hi; j0 += kBK) {
    const bool first = j0 == lo / kBK * kBK;
    // Keys from hi on are masked for every query of the block: not visited.
    const int64_t nk = min_i64(kBK, hi - j0), nkp = (nk + 1) / 2;
    // Causal, at the diagonal: keys from j0 + kHalf on are masked for the block's first
    // kHalf queries (lanes). Those lanes stop at key kHalf in every product and in the
    // softmax: a quarter of the diagonal tile's work (one tile in eight a head at S = 512).
    const bool half = g.causal && nk > kHalf && nq > kHalf && j0 >= i0 + g.off;
    const int64_t hv = kHalf / kLanes;  // the lanes' vectors that stop early
    // The score tile: every query lane against keys [0, kHalf), then, when half, only the
    // lanes from kHalf on against the rest.
    int64_t ldk = 0, ldv = 0;
    const float* kp = nullptr;
    if constexpr (!kDot) kp = tile_rows(kbase + j0 * a.ks.s, a.ks.s, nk, D, kf, &ldk);
    // With raw scores and no mask (the final scores as they are stored), the products fold the
    // tile's row maxima into mxf; else the softmax takes them in a pass of its own.
    float mxf[kBQ];
    __builtin_memcpy(mxf, m, sizeof mxf);
    bool maxed = fused;
    const auto scores = [&](int64_t jr, int64_t rows, int64_t lane) {
      const bool mask = !tile_unmasked(g, i0 + lane, i0 + nq, j0 + jr, j0 + jr + rows, c.kpm_row);
      const bool fold = fused && !mask;
      if (!fold) maxed = false;
      float* sp = st + jr * kBQ + lane;
      if constexpr (kDot) {
        const uint32_t* kr = reinterpret_cast<const uint32_t*>(kbase + (j0 + jr) * a.ks.s);
        if (fold)
          gemm<false, true>(rows, N - lane, D / 2, kr, a.ks.s / 2, 1, qv + lane, kBQ, sp, kBQ,
                            nullptr, mxf + lane);
        else
          gemm<false>(rows, N - lane, D / 2, kr, a.ks.s / 2, 1, qv + lane, kBQ, sp, kBQ);
      } else {
        if (fold)
          gemm<false, true>(rows, N - lane, D, kp + jr * ldk, ldk, 1, qt + lane, kBQ, sp, kBQ,
                            nullptr, mxf + lane);
        else
          gemm<false>(rows, N - lane, D, kp + jr * ldk, ldk, 1, qt + lane, kBQ, sp, kBQ);
      }
      if (!fused || mask)
        score_tile<kCap, kAlibi>(cm, mask, st + jr * kBQ + lane, st + jr * kBQ + lane, rows,
                                 nv - lane / kLanes, i0 + lane, g.off, j0 + jr);
    };
    if (half) {
      scores(0, kHalf, 0);
      scores(kHalf, nk - kHalf, kHalf);
    } else {
      scores(0, nk, 0);
    }
    // Online softmax, element-wise per query lane; alpha rescales the output tile in P.V's gemm.
    vf alpha[kBQ / kLanes];
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t rows = half && v < hv ? kHalf : nk;
      vf mx = m[v];
      if (maxed)
        mx = vload(mxf + v * kLanes);
      else
        for (int64_t j = 0; j < rows; ++j) mx = vmax(mx, vload(st + j * kBQ + v * kLanes));
      const vf off2 = vselect(veq(mx, neg_inf), vf{}, mx * c2v);
      alpha[v] = vexp2_softmax(m[v] * c2v - off2);
      m[v] = mx;
      vf sum = vf{};
      if constexpr (kDot) {
        // Straight into P.V's operand, bf16 pairs of consecutive keys (0 past nk).
        for (int64_t j = 0; j < rows; j += 2) {
          const vf e0 = vexp2_softmax(vfma(vload(st + j * kBQ + v * kLanes), c2v, -off2));
          const vf e1 = j + 1 < rows
                            ? vexp2_softmax(vfma(vload(st + (j + 1) * kBQ + v * kLanes), c2v, -off2))
                            : vf{};
          sum += e0;
          sum += e1;
          const vu w = pack_bf16_pair(e0, e1);
          __builtin_memcpy(pv + (j / 2) * kBQ + v * kLanes, &w, sizeof w);
        }
      } else {
        for (int64_t j = 0; j < rows; ++j) {
          float* sp = st + j * kBQ + v * kLanes;
          const vf e = vexp2_softmax(vfma(vload(sp), c2v, -off2));
          vstore(sp, e);
          sum += e;
        }
      }
      l[v] = l[v] * alpha[v] + sum;
    }
    // ot = ot * alpha + V^T P, the early-stopping lanes over their keys only.
    const float* vp = nullptr;
    const auto values = [&](int64_t lane, int64_t keys) {
      const int64_t cols = lane == 0 && half ? kHalf : N - lane;
      if constexpr (kDot) {
        const uint32_t* vt = vv;
        if (a.v_pairs != nullptr)  // j0 is a multiple of kBK, so its pairs start at pair j0 / 2
          vt = a.v_pairs + ((b * g.Hkv + hk) * ((g.Sk + 1) / 2) + j0 / 2) * D;
        if (first)
          gemm<false>(D, cols, (keys + 1) / 2, vt, 1, D, pv + lane, kBQ, ot + lane, kBQ);
        else
          gemm<true>(D, cols, (keys + 1) / 2, vt, 1, D, pv + lane, kBQ, ot + lane, kBQ,
                     alpha + lane / kLanes);
      } else {
        if (first)
          gemm<false>(D, cols, keys, vp, 1, ldv, st + lane, kBQ, ot + lane, kBQ);
        else
          gemm<true>(D, cols, keys, vp, 1, ldv, st + lane, kBQ, ot + lane, kBQ,
                     alpha + lane / kLanes);
      }
    };
    if constexpr (kDot) {
      for (int64_t jp = 0; jp < nkp && a.v_pairs == nullptr; ++jp) {  // else paired by the glue
        const bool two = 2 * jp + 1 < nk;
        const uint16_t* v0 = reinterpret_cast<const uint16_t*>(vbase + (j0 + 2 * jp) * a.vs.s);
        const uint16_t* v1 =
            reinterpret_cast<const uint16_t*>(vbase + (j0 + 2 * jp + (two ? 1 : 0)) * a.vs.s);
        const uint32_t hi_mask = two ? 0xFFFFFFFFu : 0u;
        for (int64_t d = 0; d < D; ++d)
          vv[jp * D + d] = static_cast<uint32_t>(v0[d]) |
                           ((static_cast<uint32_t>(v1[d]) << 16) & hi_mask);
      }
    } else {
      vp = tile_rows(vbase + j0 * a.vs.s, a.vs.s, nk, D, vbuf, &ldv);
    }
    if (half) {
      values(0, kHalf);
      values(kHalf, nk);
    } else {
      values(0, nk);
    }
  }

  // The rows' lse 16 lanes at a time (vlog: a scalar logf a row took ~2% of the bf16 forward).
  float lf[kBQ], lsef[kBQ];
  __builtin_memcpy(lf, l, sizeof lf);
  for (int64_t v = 0; v < nv; ++v)
    vstore(lsef + v * kLanes, vselect(vgt(l[v], 0.0f), m[v] * c2v * kLn2 + vlog(l[v]), neg_inf));
  T* obase = static_cast<T*>(a.out) + b * a.os.b + h * a.os.h;
  float* lse = a.lse + (b * g.Hq + h) * g.Sq;
  // The output tile as rows, into kf (free after the key loop; kBQ x D floats) by 16 x 16 blocks.
  const bool blocks = D % kLanes == 0;
  if (blocks) lanes_to_rows(ot, nq, D, kf);
  for (int64_t r = 0; r < nq; ++r) {
    const float lr = lf[r];
    float* orow = blocks ? kf + r * D : row;
    if (!(lr > 0.0f)) {
      fill(orow, D, 0.0f);
      lse[i0 + r] = -__builtin_inff();
    } else {
      const float inv = 1.0f / lr;
      if (blocks)
        for (int64_t d = 0; d < D; d += kLanes) vstore(orow + d, vload(orow + d) * inv);
      else
        for (int64_t d = 0; d < D; ++d) orow[d] = ot[d * kBQ + r] * inv;
      lse[i0 + r] = lsef[r];
    }
    store_f32(orow, obase + (i0 + r) * a.os.s, D);
  }
}

template <typename T, bool kDot>
void fwd_run(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
  visit_flags(a.p.softcap > 0.0f, a.p.alibi != nullptr, [&](auto cap, auto alibi) {
    fwd_task<T, decltype(cap)::value, decltype(alibi)::value, kDot>(a, task, scratch);
  });
}

// kDot needs pairs of bf16 that start at even element offsets (4-byte aligned) along every key
// row, and a q row that fits fwd_task's stack buffer.
template <typename T>
void fwd_dispatch(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
#if LLMK_ISA_LEVEL >= 3
  if constexpr (!IsF32<T>::value) {
    const bool is_bf16 = a.p.dtype == cpu::ElemType::bf16;
    const int64_t D = a.p.head_dim;
    if (is_bf16 && D % 2 == 0 && D <= 1024 && a.ks.s % 2 == 0 && a.ks.h % 2 == 0 &&
        a.ks.b % 2 == 0 && reinterpret_cast<uintptr_t>(a.k) % 4 == 0) {
      fwd_run<T, true>(a, task, scratch);
      return;
    }
  }
#endif
  fwd_run<T, false>(a, task, scratch);
}
