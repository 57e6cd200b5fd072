// 16 stored elements <-> one float32 vector, in registers: the loads and stores of elementwise
// kernels whose storage may be bf16 or fp16. Included INSIDE
// `namespace llmkernels::LLMK_ISA_NS { namespace { ... } }` after cpu_convert_impl.h (Bf16, F16,
// the scalar conversions) and cpu_vec_impl.h (vf, vu), in a region opened by isa_begin.h.
//
// Same bits as load_f32 / store_f32 at every level (bf16: the same integer rounding, written on
// vector types; fp16: the same conversions), without their round trip through a float32 buffer,
// which costs a bf16 kernel more than its arithmetic saves on bytes.

typedef uint16_t vh __attribute__((vector_size(kLanes * sizeof(uint16_t))));

LLMK_ALWAYS_INLINE vf vload_as(const float* p) { return vload(p); }
LLMK_ALWAYS_INLINE void vstore_as(float* p, const vf& v) { vstore(p, v); }

// GCC splits a 16 x u16 -> u32 __builtin_convertvector into halves and reassembles them; the
// AVX-512 levels say vpmovzxwd / vpmovdw directly.
LLMK_ALWAYS_INLINE vu widen_u16(const uint16_t* p) {
#if LLMK_ISA_LEVEL >= 2
  return (vu)_mm512_maskz_cvtepu16_epi32(static_cast<__mmask16>(0xFFFF),  // maskz: see load_f32
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#else
  vh h;
  __builtin_memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, vu);
#endif
}
// Keeps the low 16 bits of each lane (the lanes hold values below 2^16).
LLMK_ALWAYS_INLINE void narrow_u16(uint16_t* p, const vu& v) {
#if LLMK_ISA_LEVEL >= 2
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_maskz_cvtepi32_epi16(static_cast<__mmask16>(0xFFFF), (__m512i)v));
#else
  const vh h = __builtin_convertvector(v, vh);
  __builtin_memcpy(p, &h, sizeof h);
#endif
}

LLMK_ALWAYS_INLINE vf vload_as(const Bf16* p) { return (vf)(widen_u16(&p->bits) << 16); }
// Round to nearest even; any NaN becomes the quiet NaN 0x7FC0 (as bf16_from_f32).
LLMK_ALWAYS_INLINE void vstore_as(Bf16* p, const vf& v) {
  const vu u = (vu)v;
  const vu rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const vi nan = vne(v, v);  // one unordered compare, where the bit test took two instructions
  narrow_u16(&p->bits, vselect(nan, vu{} + 0x7FC0u, rounded));
}

#if LLMK_ISA_LEVEL >= 2
LLMK_ALWAYS_INLINE vf vload_as(const F16* p) {
  return (vf)_mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xFFFF),  // maskz: see load_f32
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
LLMK_ALWAYS_INLINE void vstore_as(F16* p, const vf& v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_maskz_cvtps_ph(static_cast<__mmask16>(0xFFFF), (__m512)v,
                                            _MM_FROUND_TO_NEAREST_INT));
}
#else
LLMK_ALWAYS_INLINE vf vload_as(const F16* p) {
  alignas(64) float t[kLanes];
  load_f32(p, t, kLanes);
  return vload(t);
}
LLMK_ALWAYS_INLINE void vstore_as(F16* p, const vf& v) {
  alignas(64) float t[kLanes];
  vstore(t, v);
  store_f32(t, p, kLanes);
}
#endif

// The first n < kLanes elements of p, the other lanes 0 (a row's last, partial vector), and the
// matching partial store.
template <typename T>
LLMK_ALWAYS_INLINE vf vload_part_as(const T* p, int64_t n) {
  T t[kLanes] = {};
  copy_elems(p, t, n);
  return vload_as(t);
}
template <typename T>
LLMK_ALWAYS_INLINE void vstore_part_as(T* p, const vf& v, int64_t n) {
  T t[kLanes];
  vstore_as(t, v);
  copy_elems(t, p, n);
}

// How one step of each_vector reads and writes its vectors: whole ones, or the first n lanes.
struct WholeLanes {
  template <typename T>
  LLMK_ALWAYS_INLINE vf load(const T* p) const { return vload_as(p); }
  template <typename T>
  LLMK_ALWAYS_INLINE void store(T* p, const vf& v) const { vstore_as(p, v); }
};
struct PartLanes {
  int64_t n;
  template <typename T>
  LLMK_ALWAYS_INLINE vf load(const T* p) const { return vload_part_as(p, n); }
  template <typename T>
  LLMK_ALWAYS_INLINE void store(T* p, const vf& v) const { vstore_part_as(p, v, n); }
};

// f(i, lanes) for the vectors of columns [0, n): lanes.load / lanes.store move the vector at
// column i, a WholeLanes up to the last whole vector, then a PartLanes for the ragged rest.
template <typename F>
LLMK_ALWAYS_INLINE void each_vector(int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) f(i, WholeLanes{});
  if (i < n) f(i, PartLanes{n - i});
}
