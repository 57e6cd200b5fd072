// Gated-unit (SwiGLU, GeGLU) kernel bodies, compiled once per ISA level: include only between
// isa_begin.h and isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// One pass over each row, 16 lanes at a time, every dtype converted in registers (bf16 and fp16
// through float32 scratch cost more than the bytes they save); a row's ragged last vector goes
// through a zero-padded one. Streamed outputs are staged kBlock columns at a time. The activation
// is a template parameter (a struct with value_and_derivative()): SwiGLU (silu) and GeGLU (gelu,
// erf or tanh) share the loops.
#include "swiglu_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"
#include "../common/cpu_vec_convert_impl.h"

constexpr int64_t kBlock = cpu::kMaxStoreBlock;
static_assert(kBlock % kLanes == 0, "a block is whole vectors");

// sigmoid(g) = 1 / (1 + exp(-g)), and exactly 0 below g = -88 (where the true value is a
// float32 denormal): without the select s would stay ~5e-39 (or be garbage: exp's argument is
// not clamped above) for every larger |g|, and g * s (silu, the up gradient) would grow with |g|
// instead of vanishing. Above g = 87.3, exp(-87.3) ~ 1e-38 vanishes beside 1, so clamping -g
// there gives s = 1 exactly, as a true 0 would. NaN stays NaN (the comparisons are false).
//
// exp's products and sums are fused: ~10 fewer instructions in a kernel bound by its arithmetic
// (a bf16 forward moves 6 bytes per output), and the same bits at every level from AVX2 up; the
// generic level, without FMA, rounds twice where those round once (see vfma).
LLMK_ALWAYS_INLINE vf vsigmoid(const vf& g) {
  const vf lo = vsplat(-87.3f), x = -g;
  const vf e = vexp_unclamped<true>(vmax(lo, x));  // maxps(lo, x): a NaN x passes through
  return vselect(vlt(g, -88.0f), vf{}, 1.0f / (1.0f + e));
}

// silu(g) = g * s; d silu / dg = s * (1 + g * (1 - s)).
struct Silu {
  static LLMK_ALWAYS_INLINE void value_and_derivative(const vf& g, vf& act, vf& dact) {
    const vf s = vsigmoid(g);
    act = g * s;
    dact = s * vfma(g, 1.0f - s, vsplat(1.0f));
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
    const vf cdf = vselect(vlt(g, 0.0f), tail, 1.0f - tail);
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
    vf gc = vselect(vgt(g, 10.0f), vsplat(10.0f), g);
    gc = vselect(vlt(gc, -10.0f), vsplat(-10.0f), gc);
    const vf inner = k * (gc + c * (gc * gc * gc));
    // vtanh stops at 1 - 6e-8 (its argument clamps at 9); the float32 tanh is +-1 from ~9.05.
    // Exact +-1 there makes gelu exactly g or 0 for large |g|, as the reference's.
    const vf unit = (vf)((vi)vsplat(1.0f) | ((vi)inner & (vi{} + static_cast<int32_t>(0x80000000u))));
    const vf t = vselect(vgt(vabs(inner), 9.5f), unit, vtanh(inner));
    act = 0.5f * g * (1.0f + t);
    dact = 0.5f * (1.0f + t) + ((0.5f * gc) * (1.0f - t * t)) * (k * (1.0f + (3.0f * c) * (gc * gc)));
  }
};

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
  alignas(64) T stage[kBlock];
  const int64_t block = kStream ? kBlock : a.cols;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* gate = row_of<T>(a.gate, r, a.gate_stride);
    const T* up = row_of<T>(a.up, r, a.up_stride);
    T* out = row_of<T>(a.out, r, a.out_stride);
    for (int64_t c0 = 0; c0 < a.cols; c0 += block) {
      const int64_t n = min_i64(block, a.cols - c0);
      const T* g = gate + c0;
      const T* u = up + c0;
      T* y = kStream ? stage : out + c0;
      each_vector(n, [&](int64_t i, auto lanes) {
        vf act, dact;  // dact unused: the compiler drops it
        Act::value_and_derivative(lanes.load(g + i), act, dact);
        lanes.store(y + i, act * lanes.load(u + i));
      });
      if (kStream) stream_store_bytes(out + c0, stage, n * static_cast<int64_t>(sizeof(T)));
    }
  }
  if (kStream) stream_fence();
}

template <typename Act, typename T, bool kStream>
void backward_rows(const cpu::SwigluRowsArgs& args, int64_t row_begin, int64_t row_end) {
  const SwigluRows& a = args.t;
  alignas(64) T dg_stage[kBlock], du_stage[kBlock];
  const int64_t block = kStream ? kBlock : a.cols;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* gate = row_of<T>(a.gate, r, a.gate_stride);
    const T* up = row_of<T>(a.up, r, a.up_stride);
    const T* grad = row_of<T>(a.grad, r, a.grad_stride);
    T* grad_gate = row_of<T>(a.grad_gate, r, a.grad_gate_stride);
    T* grad_up = row_of<T>(a.grad_up, r, a.grad_up_stride);
    for (int64_t c0 = 0; c0 < a.cols; c0 += block) {
      const int64_t n = min_i64(block, a.cols - c0);
      const T* g = gate + c0;
      const T* u = up + c0;
      const T* dy = grad + c0;
      T* dg = kStream ? dg_stage : grad_gate + c0;
      T* du = kStream ? du_stage : grad_up + c0;
      each_vector(n, [&](int64_t i, auto lanes) {
        vf act, dact;
        Act::value_and_derivative(lanes.load(g + i), act, dact);
        const vf d = lanes.load(dy + i);
        lanes.store(du + i, d * act);
        lanes.store(dg + i, (d * lanes.load(u + i)) * dact);
      });
      if (kStream) {
        stream_store_bytes(grad_gate + c0, dg_stage, n * static_cast<int64_t>(sizeof(T)));
        stream_store_bytes(grad_up + c0, du_stage, n * static_cast<int64_t>(sizeof(T)));
      }
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
