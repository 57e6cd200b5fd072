// The vector-math library of the per-ISA CPU kernels. Included INSIDE
// `namespace llmkernels::LLMK_ISA_NS { namespace { ... } }` by a kernel implementation header, in
// a region opened by isa_begin.h (which defines LLMK_ALWAYS_INLINE); it includes nothing itself.
//
// The math runs on 16-lane GCC/Clang vector types: each level lowers their operations to its own
// instructions (4 SSE, 2 AVX2 or 1 AVX-512 operation) while every lane keeps the same elements, so
// a kernel written with these helpers and plain expressions gives bitwise the same result at every
// level. Only vfma differs by level (one rounding where the level has FMA, two below).
// Below AVX-512, GCC 12 has no register for a 64-byte vector and keeps such variables in memory:
// fine for streaming loops, too slow for a register-blocked product (attention's AVX2 tile
// products are written on 8-lane intrinsics for that reason).

// GCC warns that 64-byte vectors change the calling convention below AVX-512; the helpers are
// always inlined and internal, so no call crosses that boundary. Left off to the end of the
// (one-kernel) translation unit, where GCC reports it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(kLanes * sizeof(uint32_t))));

LLMK_ALWAYS_INLINE vf vsplat(float a) { return vf{} + a; }
LLMK_ALWAYS_INLINE vi vsplat_i(int32_t a) { return vi{} + a; }

// Lane comparisons, -1 where true and 0 where false (a NaN compares false but for vne), and
// vselect on their masks: every comparison and lane choice of the kernels goes through these.
// Below AVX-512, GCC 12 expands a comparison or a ?: of 64-byte vectors one element at a time,
// with branches (a sigmoid ran 4.7x slower at the AVX2 level than on 8-lane pieces); there they
// run on the level's own vectors, a piece at a time (8 lanes AVX2, 4 SSE), and vselect on bits.
#if LLMK_ISA_LEVEL >= 2
constexpr int kPieceLanes = kLanes;
#elif LLMK_ISA_LEVEL == 1
constexpr int kPieceLanes = 8;
#else
constexpr int kPieceLanes = 4;
#endif
template <typename V, typename Cmp>
LLMK_ALWAYS_INLINE vi vcompare(const V& a, const V& b, Cmp cmp) {
  if constexpr (kPieceLanes == kLanes) {
    return cmp(a, b);
  } else {
    typedef __typeof__(a[0] + 0) E;
    typedef E piece __attribute__((vector_size(kPieceLanes * sizeof(E))));
    typedef int32_t piece_i __attribute__((vector_size(kPieceLanes * sizeof(int32_t))));
    constexpr int n = kLanes / kPieceLanes;
    piece ap[n], bp[n];
    piece_i rp[n];
    __builtin_memcpy(ap, &a, sizeof a);
    __builtin_memcpy(bp, &b, sizeof b);
    for (int i = 0; i < n; ++i) rp[i] = cmp(ap[i], bp[i]);
    vi r;
    __builtin_memcpy(&r, rp, sizeof r);
    return r;
  }
}
template <typename V>
LLMK_ALWAYS_INLINE vi vlt(const V& a, const V& b) { return vcompare(a, b, [](auto x, auto y) { return x < y; }); }
template <typename V>
LLMK_ALWAYS_INLINE vi vle(const V& a, const V& b) { return vcompare(a, b, [](auto x, auto y) { return x <= y; }); }
template <typename V>
LLMK_ALWAYS_INLINE vi vgt(const V& a, const V& b) { return vlt(b, a); }
template <typename V>
LLMK_ALWAYS_INLINE vi vge(const V& a, const V& b) { return vle(b, a); }
template <typename V>
LLMK_ALWAYS_INLINE vi veq(const V& a, const V& b) { return vcompare(a, b, [](auto x, auto y) { return x == y; }); }
template <typename V>
LLMK_ALWAYS_INLINE vi vne(const V& a, const V& b) { return vcompare(a, b, [](auto x, auto y) { return x != y; }); }
// A float or an int as the second operand: a splat of it.
LLMK_ALWAYS_INLINE vi vlt(const vf& a, float b) { return vlt(a, vsplat(b)); }
LLMK_ALWAYS_INLINE vi vgt(const vf& a, float b) { return vgt(a, vsplat(b)); }
LLMK_ALWAYS_INLINE vi vlt(const vi& a, int32_t b) { return vlt(a, vsplat_i(b)); }
LLMK_ALWAYS_INLINE vi vle(const vi& a, int32_t b) { return vle(a, vsplat_i(b)); }
LLMK_ALWAYS_INLINE vi vge(const vi& a, int32_t b) { return vge(a, vsplat_i(b)); }
LLMK_ALWAYS_INLINE vf vload(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
LLMK_ALWAYS_INLINE void vstore(float* p, const vf& v) { __builtin_memcpy(p, &v, sizeof v); }
// a where `mask` (a comparison's result) is -1, b where it is 0; V is vf, vi or vu.
template <typename V>
LLMK_ALWAYS_INLINE V vselect(const vi& mask, const V& a, const V& b) {
#if LLMK_ISA_LEVEL >= 2
  return mask ? a : b;
#else
  return (V)(((vi)a & mask) | ((vi)b & ~mask));
#endif
}
LLMK_ALWAYS_INLINE vf vmax(const vf& a, const vf& b) { return vselect(vgt(a, b), a, b); }
LLMK_ALWAYS_INLINE vf vabs(const vf& x) { return (vf)((vi)x & (vi{} + 0x7FFFFFFF)); }

// a * b + c with one rounding where the level has FMA (isa_begin.h keeps the compiler from
// contracting plain expressions, so this is the only fused product).
LLMK_ALWAYS_INLINE vf vfma(const vf& a, const vf& b, const vf& c) {
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

// exp(x), float32, range reduction by ln 2 (Cody-Waite) and a degree-6 polynomial on
// [-ln2/2, ln2/2] (Cephes expf: ~1 ulp). x < -87.3 (and -inf) gives 0 (denormal results flushed),
// x > 88.3 is clamped (no inf from finite input); NaN stays NaN.
//
// vexp_unclamped(x) is the same without the clamps, for x in [-87.3, 88.3] (or NaN): callers
// that bound x themselves, or discard the lanes outside, skip their compares and selects. With
// kFused its products and sums are fused (vfma): ~10 fewer instructions, at most as many
// roundings, and results bitwise alike per ISA level only (see vfma).
template <bool kFused>
LLMK_ALWAYS_INLINE vf vmadd(const vf& a, const vf& b, const vf& c) {
  if constexpr (kFused) return vfma(a, b, c);
  else return a * b + c;
}
template <bool kFused = false>
LLMK_ALWAYS_INLINE vf vexp_unclamped(const vf& xc) {
  const vf magic = vsplat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const vf shifted = vmadd<kFused>(xc, vsplat(1.44269504088896341f), magic);
  const vf fx = shifted - magic;
  vf r = vmadd<kFused>(fx, vsplat(-0.693359375f), xc);
  r = vmadd<kFused>(fx, vsplat(2.12194440e-4f), r);
  vf p = vsplat(1.9875691500e-4f);
  p = vmadd<kFused>(p, r, vsplat(1.3981999507e-3f));
  p = vmadd<kFused>(p, r, vsplat(8.3334519073e-3f));
  p = vmadd<kFused>(p, r, vsplat(4.1665795894e-2f));
  p = vmadd<kFused>(p, r, vsplat(1.6666665459e-1f));
  p = vmadd<kFused>(p, r, vsplat(5.0000001201e-1f));
  const vf y = vmadd<kFused>(p, r * r, r) + 1.0f;
  // 2^fx: fx in [-126, 128) is the low mantissa bits of `shifted` (1.5 * 2^23 + fx, whose own
  // exponent and high bits the shift drops), so no float -> int conversion is needed. Garbage
  // for NaN, where y is NaN.
  const vf scale = (vf)(((vi)shifted + 127) << 23);
  return y * scale;
}
LLMK_ALWAYS_INLINE vf vexp(const vf& x) {
  const vf lo = vsplat(-87.3f), hi = vsplat(88.3f);
  vf xc = vselect(vlt(x, lo), lo, x);  // a NaN compares false: it passes through
  xc = vselect(vgt(xc, hi), hi, xc);
  return vselect(vlt(x, lo), vf{}, vexp_unclamped(xc));
}

// tanh(x): odd polynomial below |x| = 0.625 (Cephes tanhf), 1 - 2 / (exp(2|x|) + 1) above,
// |x| >= 9 saturating to 1; sign restored by bits. NaN stays NaN.
LLMK_ALWAYS_INLINE vf vtanh(const vf& x) {
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
  const vf ac = vselect(vgt(a, 9.0f), vsplat(9.0f), a);
  const vf large = 1.0f - 2.0f / (vexp(ac + ac) + 1.0f);
  const vf t = vselect(vlt(a, 0.625f), small, large);
  return (vf)((vi)t | (bits & sign_mask));
}

// log(x) for normal positive x (Cephes logf: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), a
// degree-8 polynomial in m - 1; ~1 ulp). Zero, negative, denormal, inf and NaN inputs are not
// handled: callers pass values they know to be normal and positive (e.g. 1 + exp(-d), d >= 0).
LLMK_ALWAYS_INLINE vf vlog(const vf& x) {
  const vi bits = (vi)x;
  vi e = ((bits >> 23) & 0xFF) - 126;
  vf m = (vf)((bits & 0x007FFFFF) | 0x3F000000);  // in [0.5, 1)
  const vi below = vlt(m, 0.70710678118654752f);
  e = e + below;  // a true comparison is -1
  m = vselect(below, m + m, m) - 1.0f;
  const vf z = m * m;
  vf y = vsplat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = (y * m) * z;
  const vf fe = __builtin_convertvector(e, vf);
  y = y + fe * -2.12194440e-4f;
  y = y - z * 0.5f;
  return (m + y) + fe * 0.693359375f;
}

// Lane mask of the columns i + lane that lie below n (a row's last, partial vector).
LLMK_ALWAYS_INLINE vi lanes_below(int64_t i, int64_t n) {
  const vi lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const int64_t left = n - i < kLanes ? n - i : kLanes;
  return vlt(lane, static_cast<int32_t>(left));
}

// Lane reductions in one fixed (tree) order: the same at every level.
LLMK_ALWAYS_INLINE float hsum(const vf& v) {
  float t[kLanes];
  __builtin_memcpy(t, &v, sizeof v);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) t[j] = t[j] + t[j + w];
  return t[0];
}
LLMK_ALWAYS_INLINE float hmax(const vf& v) {
  float t[kLanes];
  __builtin_memcpy(t, &v, sizeof v);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) t[j] = t[j + w] > t[j] ? t[j + w] : t[j];
  return t[0];
}

LLMK_ALWAYS_INLINE void fill(float* p, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}
