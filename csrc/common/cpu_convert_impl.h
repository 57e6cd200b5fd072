// Float32 <-> storage conversions for the per-ISA kernels. Included INSIDE
// `namespace llmkernels::LLMK_ISA_NS { namespace { ... } }` by a kernel implementation header, in
// a region opened by isa_begin.h; it includes nothing itself (x86 intrinsics come from
// <immintrin.h>, included by the translation unit before the region).
//
// bf16: bit arithmetic, round-to-nearest-even, NaN -> quiet NaN 0x7FC0 (as c10::BFloat16), written
// so the compiler vectorises it at every level. fp16: F16C instructions from the avx2 level up;
// below that the branch-free bit conversion c10::Half uses (FP16 library), bitwise identical.

struct Bf16 { uint16_t bits; };
struct F16 { uint16_t bits; };

inline float f32_from_bits(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t bf16_from_f32(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint32_t rounded = (u + UINT32_C(0x7FFF) + ((u >> 16) & 1u)) >> 16;
  return (u & UINT32_C(0x7FFFFFFF)) > UINT32_C(0x7F800000) ? UINT16_C(0x7FC0)
                                                            : static_cast<uint16_t>(rounded);
}

inline float f16_to_f32_portable(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & UINT32_C(0x80000000);
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = UINT32_C(0xE0) << 23;
  const float exp_scale = 0x1.0p-112f;
  const float normalized = f32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = UINT32_C(126) << 23;
  const float magic_bias = 0.5f;
  const float denormalized = f32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
  const uint32_t denormalized_cutoff = UINT32_C(1) << 27;
  // Selects by mask rather than ?: so the loop if-converts and vectorises at the generic level.
  const uint32_t use_denormal = 0u - static_cast<uint32_t>(two_w < denormalized_cutoff);
  const uint32_t result = sign | (f32_to_bits(denormalized) & use_denormal) |
                          (f32_to_bits(normalized) & ~use_denormal);
  return f32_from_bits(result);
}

inline uint16_t f16_from_f32_portable(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (__builtin_fabsf(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = f32_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & UINT32_C(0x80000000);
  uint32_t bias = shl1_w & UINT32_C(0xFF000000);
  const uint32_t small = 0u - static_cast<uint32_t>(bias < UINT32_C(0x71000000));
  bias = (UINT32_C(0x71000000) & small) | (bias & ~small);
  base = f32_from_bits((bias >> 1) + UINT32_C(0x07800000)) + base;
  const uint32_t bits = f32_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & UINT32_C(0x00007C00);
  const uint32_t mantissa_bits = bits & UINT32_C(0x00000FFF);
  const uint32_t nonsign = exp_bits + mantissa_bits;
  const uint32_t is_nan = 0u - static_cast<uint32_t>(shl1_w > UINT32_C(0xFF000000));
  return static_cast<uint16_t>((sign >> 16) | (UINT32_C(0x7E00) & is_nan) | (nonsign & ~is_nan));
}

// load_f32(src, dst, n): n stored elements -> float32; store_f32(src, dst, n): the reverse.
inline void load_f32(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}
inline void store_f32(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

inline void load_f32(const Bf16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i].bits);
}
inline void store_f32(const float* src, Bf16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i].bits = bf16_from_f32(src[i]);
}

#if LLMK_ISA_LEVEL >= 2
inline void load_f32(const F16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_maskz_cvtph_ps(  // maskz: the unmasked form trips
                                  static_cast<__mmask16>(0xFFFF),  // -Wmaybe-uninitialized
                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i].bits);
}
inline void store_f32(const float* src, F16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_maskz_cvtps_ph(static_cast<__mmask16>(0xFFFF), _mm512_loadu_ps(src + i),
                                              _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i].bits = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
#elif LLMK_ISA_LEVEL == 1
inline void load_f32(const F16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i].bits);
}
inline void store_f32(const float* src, F16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i].bits = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
#else
inline void load_f32(const F16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32_portable(src[i].bits);
}
inline void store_f32(const float* src, F16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i].bits = f16_from_f32_portable(src[i]);
}
#endif


inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// Raw element copy for columns that pass through unchanged.
template <typename T>
inline void copy_elems(const T* src, T* dst, int64_t n) {
  if (n > 0) __builtin_memcpy(dst, src, static_cast<uint64_t>(n) * sizeof(T));
}

// Non-temporal (streaming) stores for outputs much larger than the caches: they skip the
// read-for-ownership of each destination line, which otherwise makes an out-of-place pass move
// 3 bytes per byte written instead of 2. Unaligned head and tail bytes use plain stores.
// Call stream_fence() before the results are handed to another thread.
#if LLMK_CPU_X86
#if LLMK_ISA_LEVEL >= 2
constexpr int64_t kStreamBytes = 64;
inline void stream_chunk(char* d, const char* s) {
  _mm512_stream_si512(reinterpret_cast<__m512i*>(d), _mm512_loadu_si512(s));
}
#elif LLMK_ISA_LEVEL == 1
constexpr int64_t kStreamBytes = 32;
inline void stream_chunk(char* d, const char* s) {
  _mm256_stream_si256(reinterpret_cast<__m256i*>(d),
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
}
#else
constexpr int64_t kStreamBytes = 16;
inline void stream_chunk(char* d, const char* s) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(d),
                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
}
#endif
inline void stream_store_bytes(void* dst, const void* src, int64_t nbytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(d) &
                                                  static_cast<uintptr_t>(kStreamBytes - 1));
  const int64_t head = misaligned ? min_i64(nbytes, kStreamBytes - misaligned) : 0;
  if (head > 0) __builtin_memcpy(d, s, static_cast<uint64_t>(head));
  int64_t i = head;
  for (; i + kStreamBytes <= nbytes; i += kStreamBytes) stream_chunk(d + i, s + i);
  if (i < nbytes) __builtin_memcpy(d + i, s + i, static_cast<uint64_t>(nbytes - i));
}
inline void stream_fence() { _mm_sfence(); }
#else
inline void stream_store_bytes(void* dst, const void* src, int64_t nbytes) {
  if (nbytes > 0) __builtin_memcpy(dst, src, static_cast<uint64_t>(nbytes));
}
inline void stream_fence() {}
#endif

// Converts n floats and writes them to dst, streaming when kStream.
template <bool kStream, typename T>
inline void store_out(const float* src, T* dst, int64_t n) {
  if (kStream) {
    alignas(64) T tmp[cpu::kMaxStoreBlock];
    store_f32(src, tmp, n);
    stream_store_bytes(dst, tmp, n * static_cast<int64_t>(sizeof(T)));
  } else {
    store_f32(src, dst, n);
  }
}
