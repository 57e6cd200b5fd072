// Gated-unit (SwiGLU, GeGLU) kernel bodies, compiled once per ISA level: include only between
// isa_begin.h and isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// One pass over each row in blocks of kBlock columns, 16 lanes at a time: float32 rows are read
// and written in place where a block is whole vectors, other dtypes (and a row's ragged last
// block) go through float32 scratch. The activation is a template parameter (a struct with
// value_and_derivative()): SwiGLU (silu) and GeGLU (gelu, erf or tanh) share the loops.
#include "swiglu_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"

constexpr int64_t kBlock = cpu::kMaxStoreBlock;
static_assert(kBlock % kLanes == 0, "a block is whole vectors");

// sigmoid(g) = 1 / (1 + exp(-g)), and exactly 0 below g = -88 (where the true value is a
// float32 denormal): vexp clamps its argument near 88.3, so without the select s would stay
// ~5e-39 for every larger |g|, and g * s (silu, the up gradient) would grow with |g| (-1.6 at
// g = -3.4e38, a bfloat16 gate) instead of vanishing. NaN stays NaN (the comparison is false).
LLMK_ALWAYS_INLINE vf vsigmoid(const vf& g) {
  return vselect(g < -88.0f, vf{}, 1.0f / (1.0f + vexp(-g)));
}

// silu(g) = g * s; d silu / dg = s * (1 + g * (1 - s)).
struct Silu {
  static LLMK_ALWAYS_INLINE void value_and_derivative(const vf& g, vf& act, vf& dact) {
    const vf s = vsigmoid(g);
    act = g * s;
    dact = s * (1.0f + g * (1.0f - s));
  }
};

// gelu(g) = g Phi(g), gelu' = Phi(g) + g phi(g). Phi(-|g|) = erfc(|g| / sqrt 2) / 2 with the
// Chebyshev fit of Numerical Recipes' erfcc (erfc(x) = t exp(-x^2 + poly(t)), t = 1 / (1 + x / 2)):
// a fractional error below 1.2e-7 everywhere, so the left tail, where gelu is a small multiple of
// a tiny Phi, keeps float32's relative accuracy (Abramowitz-Stegun 7.1.26's absolute 1.5e-7 lost
// it: ~5e-5 relative at g = -3). Huge |g|: t exp(...) is 0, so Phi is 0 or 1 exactly.
struct Gelu {
  static LLMK_ALWAYS_INLINE void value_and_derivative(const vf& g, vf& act, vf& dact) {
    const vf x = vabs(g) * 0.70710678118654752f;
    const vf t = 1.0f / (1.0f + 0.5f * x);
    vf p = vsplat(0.17087277f);
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const vf square = x * x;
    const vf tail = 0.5f * (t * vexp(p - square));
    const vf cdf = vselect(g < 0.0f, tail, 1.0f - tail);
    act = g * cdf;
    dact = cdf + g * (vexp(-square) * 0.39894228040143268f);
  }
};

// gelu(g) ~ g (1 + t) / 2, t = tanh(k (g + c g^3)); derivative (1 + t) / 2 + g (1 - t^2) k
// (1 + 3 c g^2) / 2. Past |g| = 10, t is +-1 exactly and the second term 0: clamping there keeps
// g^3 from overflowing (inf * 0 would be NaN from a finite gate).
struct GeluTanh {
  static LLMK_ALWAYS_INLINE void value_and_derivative(const vf& g, vf& act, vf& dact) {
    constexpr float k = 0.79788456080286536f, c = 0.044715f;
    vf gc = vselect(g > 10.0f, vsplat(10.0f), g);
    gc = vselect(gc < -10.0f, vsplat(-10.0f), gc);
    const vf inner = k * (gc + c * (gc * gc * gc));
    // vtanh stops at 1 - 6e-8 (its argument clamps at 9); the float32 tanh is +-1 from ~9.05.
    // Exact +-1 there makes gelu exactly g or 0 for large |g|, as the reference's.
    const vf unit = (vf)((vi)vsplat(1.0f) | ((vi)inner & (vi{} + static_cast<int32_t>(0x80000000u))));
    const vf t = vselect(vabs(inner) > 9.5f, unit, vtanh(inner));
    act = 0.5f * g * (1.0f + t);
    dact = 0.5f * (1.0f + t) + ((0.5f * gc) * (1.0f - t * t)) * (k * (1.0f + (3.0f * c) * (gc * gc)));
  }
};

// n float32 values of a block: the row itself when it is float32 whole vectors, else scratch.
// The vector loop also reads the scratch lanes past n: the buffers are zeroed once per call, so
// those lanes hold earlier finite or zero values, whose results are never stored.
inline const float* read_block(const float* src, float* scratch, int64_t n) {
  if (n % kLanes == 0) return src;
  load_f32(src, scratch, n);
  return scratch;
}
template <typename T>
inline const float* read_block(const T* src, float* scratch, int64_t n) {
  load_f32(src, scratch, n);
  return scratch;
}

// Where the vector loop writes a block: the float32 row itself when it can take whole vectors
// and plain stores, else scratch that write_block converts and stores.
template <bool kStream>
inline float* block_target(float* dst, float* scratch, int64_t n) {
  return (!kStream && n % kLanes == 0) ? dst : scratch;
}
template <bool kStream, typename T>
inline float* block_target(T*, float* scratch, int64_t) {
  return scratch;
}
template <bool kStream, typename T>
inline void write_block(const float* y, T* dst, int64_t n) {
  store_out<kStream>(y, dst, n);
}
// float32 scratch streams straight out (store_out would copy it to a staging buffer first).
template <bool kStream>
inline void write_block(const float* y, float* dst, int64_t n) {
  if (y == dst) return;
  if (kStream) stream_store_bytes(dst, y, n * static_cast<int64_t>(sizeof(float)));
  else store_f32(y, dst, n);
}

template <typename T>
inline const T* row_of(const void* base, int64_t row, int64_t stride) {
  return static_cast<const T*>(base) + row * stride;
}
template <typename T>
inline T* row_of(void* base, int64_t row, int64_t stride) {
  return static_cast<T*>(base) + row * stride;
}

template <typename Act, typename T, bool kStream>
void forward_rows(const cpu::SwigluRowsArgs& args, int64_t row_begin, int64_t row_end) {
  const SwigluRows& a = args.t;
  alignas(64) float g_buf[kBlock] = {}, u_buf[kBlock] = {}, y_buf[kBlock] = {};
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* gate = row_of<T>(a.gate, r, a.gate_stride);
    const T* up = row_of<T>(a.up, r, a.up_stride);
    T* out = row_of<T>(a.out, r, a.out_stride);
    for (int64_t c0 = 0; c0 < a.cols; c0 += kBlock) {
      const int64_t n = min_i64(kBlock, a.cols - c0);
      const float* g = read_block(gate + c0, g_buf, n);
      const float* u = read_block(up + c0, u_buf, n);
      float* y = block_target<kStream>(out + c0, y_buf, n);
      for (int64_t i = 0; i < n; i += kLanes) {
        vf act, dact;  // dact unused: the compiler drops it
        Act::value_and_derivative(vload(g + i), act, dact);
        vstore(y + i, act * vload(u + i));
      }
      write_block<kStream>(y, out + c0, n);
    }
  }
  if (kStream) stream_fence();
}

template <typename Act, typename T, bool kStream>
void backward_rows(const cpu::SwigluRowsArgs& args, int64_t row_begin, int64_t row_end) {
  const SwigluRows& a = args.t;
  alignas(64) float g_buf[kBlock] = {}, u_buf[kBlock] = {}, dy_buf[kBlock] = {};
  alignas(64) float dg_buf[kBlock] = {}, du_buf[kBlock] = {};
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* gate = row_of<T>(a.gate, r, a.gate_stride);
    const T* up = row_of<T>(a.up, r, a.up_stride);
    const T* grad = row_of<T>(a.grad, r, a.grad_stride);
    T* grad_gate = row_of<T>(a.grad_gate, r, a.grad_gate_stride);
    T* grad_up = row_of<T>(a.grad_up, r, a.grad_up_stride);
    for (int64_t c0 = 0; c0 < a.cols; c0 += kBlock) {
      const int64_t n = min_i64(kBlock, a.cols - c0);
      const float* g = read_block(gate + c0, g_buf, n);
      const float* u = read_block(up + c0, u_buf, n);
      const float* dy = read_block(grad + c0, dy_buf, n);
      float* dg = block_target<kStream>(grad_gate + c0, dg_buf, n);
      float* du = block_target<kStream>(grad_up + c0, du_buf, n);
      for (int64_t i = 0; i < n; i += kLanes) {
        vf act, dact;
        Act::value_and_derivative(vload(g + i), act, dact);
        const vf d = vload(dy + i);
        vstore(du + i, d * act);
        vstore(dg + i, (d * vload(u + i)) * dact);
      }
      write_block<kStream>(dg, grad_gate + c0, n);
      write_block<kStream>(du, grad_up + c0, n);
    }
  }
  if (kStream) stream_fence();
}

template <typename Act>
struct ActTag {
  using type = Act;
};

// Calls f(ActTag<Act>{}, TypeTag<T>{}, BoolTag<stream>{}) for the arguments' activation, dtype
// and streaming flag: the loops carry no run-time branch on any of them.
template <typename F>
LLMK_ALWAYS_INLINE void visit_rows(const cpu::SwigluRowsArgs& a, const F& f) {
  visit_elem_type(a.dtype, [&](auto type) {
    const auto with_act = [&](auto act) {
      if (a.stream_out) f(act, type, BoolTag<true>{});
      else f(act, type, BoolTag<false>{});
    };
    switch (a.t.activation) {
      case kGelu: with_act(ActTag<Gelu>{}); break;
      case kGeluTanh: with_act(ActTag<GeluTanh>{}); break;
      default: with_act(ActTag<Silu>{}); break;
    }
  });
}

}  // namespace

void swiglu_forward_rows(const cpu::SwigluRowsArgs& a, int64_t row_begin, int64_t row_end) {
  visit_rows(a, [&](auto act, auto type, auto stream) {
    forward_rows<typename decltype(act)::type, typename decltype(type)::type, decltype(stream)::value>(
        a, row_begin, row_end);
  });
}

void swiglu_backward_rows(const cpu::SwigluRowsArgs& a, int64_t row_begin, int64_t row_end) {
  visit_rows(a, [&](auto act, auto type, auto stream) {
    backward_rows<typename decltype(act)::type, typename decltype(type)::type, decltype(stream)::value>(
        a, row_begin, row_end);
  });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
