// Tile products of the attention CPU kernel (see attention_cpu_kernel_impl.h): a register-blocked
// micro-kernel C (+)= A * B with A broadcast one scalar at a time and B, C row-major, 16 query
// lanes per vector; float32 on vfma at every level, bf16 pairs on vdpbf16ps at avx512bf16.

constexpr int64_t kBQ = cpu::kAttnBlockQ;
constexpr int64_t kBK = cpu::kAttnBlockK;

// Register blocking of the micro-kernel: kMR rows of A x kNV vectors of B.
#if LLMK_ISA_LEVEL >= 2
constexpr int kMR = 4;
constexpr int kNV = 4;
#elif LLMK_ISA_LEVEL == 1  // 8 accumulators of 8 lanes, 2 of B, 1 broadcast: 11 of 16 registers
constexpr int kMR = 4;
constexpr int kNV = 1;
#else
constexpr int kMR = 2;
constexpr int kNV = 1;
#endif

LLMK_ALWAYS_INLINE int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
LLMK_ALWAYS_INLINE int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

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
// With kAcc and `cs`, C's vector column v is first multiplied by cs[v]: the forward's online-
// softmax rescale of its output tile, done on the accumulators as they are loaded instead of as a
// pass of its own (a load, a multiply and a store per element of the tile).
// With kMax, cmax[v] = vmax(cmax[v], max of C's rows in vector column v) as C is stored: the
// forward's running row maximum from the registers, where a pass of its own loaded the tile again
// (a template flag, so that every other product compiles as it did without it).
#if LLMK_ISA_LEVEL == 1
// The float32 micro-kernel at the AVX2 level, on 8-lane registers: GCC 12 has no register for a
// 64-byte vector there and keeps arrays of them (the accumulators) in memory, written in 16-byte
// pieces and read back as 32-byte ones, a stalled store forward each (the kernel ran 7x slower
// than the generic build). The same products in the same order as `micro`: identical results.
template <int R, int NV, bool kAcc, bool kMax>
LLMK_ALWAYS_INLINE void micro_avx2(const float* A, int64_t sr, int64_t sk, const float* B,
                                   int64_t ldb, float* C, int64_t ldc, int64_t K, const vf* cs,
                                   float* cmax) {
  constexpr int H = 2 * NV;  // 8-lane halves of the NV 16-lane vectors
  __m256 acc[R][H];
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < H; ++x)
      acc[r][x] = kAcc ? _mm256_loadu_ps(C + r * ldc + x * 8) : _mm256_setzero_ps();
  if (kAcc && cs != nullptr) {
    const float* csf = reinterpret_cast<const float*>(cs);
    for (int x = 0; x < H; ++x) {
      const __m256 f = _mm256_loadu_ps(csf + x * 8);
      for (int r = 0; r < R; ++r) acc[r][x] = _mm256_mul_ps(acc[r][x], f);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const int64_t ko = k * sk;
    __m256 bv[H];
    for (int x = 0; x < H; ++x) bv[x] = _mm256_loadu_ps(b + x * 8);
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(A + r * sr + ko);
      for (int x = 0; x < H; ++x) acc[r][x] = _mm256_fmadd_ps(av, bv[x], acc[r][x]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < H; ++x) _mm256_storeu_ps(C + r * ldc + x * 8, acc[r][x]);
  if constexpr (kMax)
    for (int x = 0; x < H; ++x) {
      __m256 mx = _mm256_loadu_ps(cmax + x * 8);
      for (int r = 0; r < R; ++r) mx = _mm256_max_ps(mx, acc[r][x]);  // vmax's operand order
      _mm256_storeu_ps(cmax + x * 8, mx);
    }
}
#endif

template <typename TA, int R, int NV, bool kAcc, bool kMax>
LLMK_ALWAYS_INLINE void micro(const TA* A, int64_t sr, int64_t sk, const TA* B, int64_t ldb,
                              float* C, int64_t ldc, int64_t K, const vf* cs, float* cmax) {
#if LLMK_ISA_LEVEL == 1
  if constexpr (IsF32<TA>::value) {
    micro_avx2<R, NV, kAcc, kMax>(A, sr, sk, B, ldb, C, ldc, K, cs, cmax);
    return;
  }
#endif
  vf acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = kAcc ? vload(C + r * ldc + v * kLanes) : vf{};
  if (kAcc && cs != nullptr)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = acc[r][v] * cs[v];
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
  if constexpr (kMax)
    for (int v = 0; v < NV; ++v) {
      vf mx = vload(cmax + v * kLanes);
      for (int r = 0; r < R; ++r) mx = vmax(mx, acc[r][v]);
      vstore(cmax + v * kLanes, mx);
    }
}

template <typename TA, int NV, bool kAcc, bool kMax>
LLMK_ALWAYS_INLINE void micro_rows(int64_t rows, const TA* A, int64_t sr, int64_t sk, const TA* B,
                                   int64_t ldb, float* C, int64_t ldc, int64_t K, const vf* cs,
                                   float* cmax) {
  switch (rows) {
    case 1: micro<TA, 1, NV, kAcc, kMax>(A, sr, sk, B, ldb, C, ldc, K, cs, cmax); break;
    case 2: micro<TA, (kMR >= 2 ? 2 : 1), NV, kAcc, kMax>(A, sr, sk, B, ldb, C, ldc, K, cs, cmax); break;
    case 3: micro<TA, (kMR >= 3 ? 3 : 1), NV, kAcc, kMax>(A, sr, sk, B, ldb, C, ldc, K, cs, cmax); break;
    default: micro<TA, (kMR >= 4 ? 4 : 1), NV, kAcc, kMax>(A, sr, sk, B, ldb, C, ldc, K, cs, cmax); break;
  }
}

// `cs` (kAcc only): per vector column of C, the factor C is multiplied by before accumulating.
// kMax: `cmax` (N floats) folds in the column maxima of the C it stores (see micro).
template <bool kAcc, bool kMax = false, typename TA>
void gemm(int64_t M, int64_t N, int64_t K, const TA* A, int64_t sr, int64_t sk, const TA* B,
          int64_t ldb, float* C, int64_t ldc, const vf* cs = nullptr, float* cmax = nullptr) {
  const int64_t nvec = N / kLanes;
  for (int64_t c0 = 0; c0 < nvec; c0 += kNV) {
    const int64_t nv = min_i64(kNV, nvec - c0);
    const TA* Bc = B + c0 * kLanes;
    float* Cc = C + c0 * kLanes;
    const vf* csc = cs != nullptr ? cs + c0 : nullptr;
    float* cmc = cmax != nullptr ? cmax + c0 * kLanes : nullptr;
    for (int64_t r0 = 0; r0 < M; r0 += kMR) {
      const int64_t rows = min_i64(kMR, M - r0);
      const TA* Ar = A + r0 * sr;
      float* Cr = Cc + r0 * ldc;
      switch (nv) {
        case 1: micro_rows<TA, 1, kAcc, kMax>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K, csc, cmc); break;
        case 2: micro_rows<TA, (kNV >= 2 ? 2 : 1), kAcc, kMax>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K, csc, cmc); break;
        case 3: micro_rows<TA, (kNV >= 3 ? 3 : 1), kAcc, kMax>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K, csc, cmc); break;
        default: micro_rows<TA, (kNV >= 4 ? 4 : 1), kAcc, kMax>(rows, Ar, sr, sk, Bc, ldb, Cr, ldc, K, csc, cmc); break;
      }
    }
  }
}

// Two float32 rows -> one row of bf16 pairs (lo from `a`, hi from `b`), round-to-nearest-even;
// the values are finite here (probabilities and their gradients).
LLMK_ALWAYS_INLINE vu pack_bf16_pair(const vf& a, const vf& b) {
#if LLMK_ISA_LEVEL >= 3
  // vcvtne2ps2bf16 (the same rounding; denormals flush to 0) puts a's 16 results below b's;
  // vpermw interleaves them into pairs.
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh((__m512)b, (__m512)a);
  const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return (vu)_mm512_permutexvar_epi16(pairs, both);
#else
  const vu ua = (vu)a, ub = (vu)b;
  const vu ra = ua + 0x7FFFu + ((ua >> 16) & 1u), rb = ub + 0x7FFFu + ((ub >> 16) & 1u);
  return (ra >> 16) | (rb & 0xFFFF0000u);
#endif
}

template <typename T>
struct IsBf16 {
  static constexpr bool value = false;
};
template <>
struct IsBf16<Bf16> {
  static constexpr bool value = true;
};

// The bf16 backward runs S, dP and dv on vdpbf16ps at the avx512bf16 level (bwd_kv_block).
template <typename T>
struct BwdDot {
  static constexpr bool value = LLMK_ISA_LEVEL >= 3 && IsBf16<T>::value;
};

// One float32 vector -> 16 consecutive bf16 (same rounding as pack_bf16_pair): vcvtneps2bf16 at
// the avx512bf16 level, the only one that calls it (the fallback keeps other levels compiling).
LLMK_ALWAYS_INLINE void store_bf16_row(uint16_t* dst, const vf& a) {
#if LLMK_ISA_LEVEL >= 3
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), (__m256i)_mm512_cvtneps_pbh((__m512)a));
#else
  typedef uint16_t vh __attribute__((vector_size(kLanes * sizeof(uint16_t))));
  const vu ua = (vu)a;
  const vh h = __builtin_convertvector((ua + 0x7FFFu + ((ua >> 16) & 1u)) >> 16, vh);
  __builtin_memcpy(dst, &h, sizeof h);
#endif
}

// A 16 x 16 block of 32-bit words transposed: the 16 words at `src` + i * `stride` bytes (row i,
// only rows i < `rows`; the others read as 0) become column i of dst (dst row c at dst + c * ldd).
// The query tiles (rows of bf16 pairs along d -> d pairs x query lanes) and the forward's output
// (D x query lanes -> rows) are such transposes; word by word they took ~10% of the bf16 forward's
// time outside its tile products. Bits only: float payloads pass unchanged.
LLMK_ALWAYS_INLINE void transpose_words16(const char* src, int64_t stride, int64_t rows,
                                          uint32_t* dst, int64_t ldd) {
  // The AVX-512 unpack/shuffle network written as vector shuffles (the intrinsics start from
  // _mm512_undefined_ps, which GCC 12 reports as maybe-uninitialized); other levels lower the
  // same shuffles their own way.
  vu r[16], t[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = vu{};
    if (i < rows) __builtin_memcpy(&r[i], src + i * stride, sizeof r[i]);
  }
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: (row 2i, row 2i + 1) interleaved
    t[2 * i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24,
                                       9, 25, 12, 28, 13, 29);
    t[2 * i + 1] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10,
                                           26, 11, 27, 14, 30, 15, 31);
  }
  for (int g = 0; g < 4; ++g) {  // r[4g + e], lane L: rows 4g..4g+3 of word 4L + e
    const vu a0 = t[4 * g], a1 = t[4 * g + 1], a2 = t[4 * g + 2], a3 = t[4 * g + 3];
    r[4 * g] = __builtin_shufflevector(a0, a2, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
    r[4 * g + 1] = __builtin_shufflevector(a0, a2, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    r[4 * g + 2] = __builtin_shufflevector(a1, a3, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
    r[4 * g + 3] = __builtin_shufflevector(a1, a3, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  }
  for (int e = 0; e < 4; ++e) {  // word 4L + e gathers lane L of r[e], r[4 + e], r[8 + e], r[12 + e]
    const vu lo01 = __builtin_shufflevector(r[e], r[4 + e], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const vu hi01 = __builtin_shufflevector(r[e], r[4 + e], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const vu lo23 = __builtin_shufflevector(r[8 + e], r[12 + e], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const vu hi23 = __builtin_shufflevector(r[8 + e], r[12 + e], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const vu w0 = __builtin_shufflevector(lo01, lo23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const vu w1 = __builtin_shufflevector(lo01, lo23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const vu w2 = __builtin_shufflevector(hi01, hi23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const vu w3 = __builtin_shufflevector(hi01, hi23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    __builtin_memcpy(dst + (0 + e) * ldd, &w0, sizeof w0);
    __builtin_memcpy(dst + (4 + e) * ldd, &w1, sizeof w1);
    __builtin_memcpy(dst + (8 + e) * ldd, &w2, sizeof w2);
    __builtin_memcpy(dst + (12 + e) * ldd, &w3, sizeof w3);
  }
}

// Rows [0, nq) of 32-bit words (row r at src + r * stride bytes, `words` of them, a multiple of
// 16) as columns: dst[w * kBQ + r], rows nq..kBQ - 1 zero.
LLMK_ALWAYS_INLINE void load_word_columns(const char* src, int64_t stride, int64_t nq,
                                          int64_t words, uint32_t* dst) {
  for (int64_t r0 = 0; r0 < kBQ; r0 += 16) {
    const int64_t rows = max_i64(0, min_i64(16, nq - r0));
    const char* s = rows > 0 ? src + r0 * stride : src;
    for (int64_t w0 = 0; w0 < words; w0 += 16)
      transpose_words16(s + w0 * 4, stride, rows, dst + w0 * kBQ + r0, kBQ);
  }
}

// A (D x kBQ) tile of query lanes (D a multiple of 16) as rows: buf[r * D + d] for the queries
// r < round16(nq) (the forward's output, the backward's dq).
LLMK_ALWAYS_INLINE void lanes_to_rows(const float* tile, int64_t nq, int64_t D, float* buf) {
  for (int64_t r0 = 0; r0 < nq; r0 += 16)
    for (int64_t d0 = 0; d0 < D; d0 += 16)
      transpose_words16(reinterpret_cast<const char*>(tile + d0 * kBQ + r0), kBQ * 4, 16,
                        reinterpret_cast<uint32_t*>(buf + r0 * D + d0), D);
}
