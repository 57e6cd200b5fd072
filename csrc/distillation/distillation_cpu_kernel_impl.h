// Distillation kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// One row pair at a time: the student row (all Vs columns) and the teacher's first
// V = min(Vs, Vt) columns are read once, converted (and soft-capped) into float32 scratch that
// stays in cache, and every later sweep runs on that scratch: maxima, the sums of exp (online
// softmax statistics of s/T, t/T and, for the hard part, s), the divergence and its gradient.
// Both models' rows go through the same code, so identical logits give bitwise identical
// log-probabilities, a loss of exactly 0 (forward and reverse KL) and a zero gradient.
// Every reduction runs in one fixed order (16-lane float32 block sums, float64 across blocks):
// bitwise the same result at every level and thread count.
#include "distillation_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"

constexpr int64_t kBlock = cpu::kMaxStoreBlock;
static_assert(kBlock % kLanes == 0, "blocks hold whole vectors");

LLMK_ALWAYS_INLINE int64_t whole_vectors(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// z[0, R(n)) = cap * tanh(z / cap), in place.
void cap_row(float* z, int64_t n, float cap) {
  const int64_t nv = whole_vectors(n);
  for (int64_t i = 0; i < nv; i += kLanes) vstore(z + i, vtanh(vload(z + i) / cap) * cap);
}

// z[0, n) = the row as float32 (soft-capped when kCap), zeros up to a whole vector.
template <typename T, bool kCap>
void load_row(const T* x, int64_t n, float cap, float* z) {
  load_f32(x, z, n);
  fill(z + n, whole_vectors(n) - n, 0.0f);
  if (kCap) cap_row(z, n, cap);
}

// Softmax statistics of z[0, n) * scale: the max m of z and sum exp((z - m) * scale).
struct Stats {
  float max;
  double sum;
};

Stats softmax_stats(const float* z, int64_t n, float scale) {
  const float neg_inf = -__builtin_inff();
  vf vm = vsplat(neg_inf);
  for (int64_t i = 0; i < n; i += kLanes) {
    const vf v = vselect(lanes_below(i, n), vload(z + i), vsplat(neg_inf));
    vm = vselect(vgt(v, vm), v, vm);
  }
  const float m = hmax(vm);
  double s = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
    const int64_t end = min_i64(c0 + kBlock, n);
    vf acc = vf{};
    for (int64_t i = c0; i < end; i += kLanes) {
      acc += vselect(lanes_below(i, n), vexp((vload(z + i) - m) * scale), vf{});
    }
    s += static_cast<double>(hsum(acc));
  }
  return Stats{m, s};
}

// Log-probabilities of one column vector: (z - m) * scale - log(sum).
struct LogSoftmax {
  float max, scale, log_sum;
  LLMK_ALWAYS_INLINE vf at(const float* z, int64_t i) const { return (vload(z + i) - max) * scale - log_sum; }
};

LogSoftmax log_softmax_of(const Stats& st, float scale) {
  return LogSoftmax{st.max, scale, static_cast<float>(__builtin_log(st.sum))};
}

// log(beta e^b + (1 - beta) e^a) from b + log(beta) and a + log(1 - beta), without overflow.
LLMK_ALWAYS_INLINE vf log_mix(const vf& bt, const vf& as) {
  const vf hi = vmax(bt, as);
  const vf lo = vselect(vgt(bt, as), as, bt);
  return hi + vlog(1.0f + vexp(lo - hi));
}

// p * d with 0 * anything = 0: a probability that is 0 (a logit of -inf, a masked vocabulary entry)
// adds nothing to sum p log(p / q), whatever the other distribution holds there.
LLMK_ALWAYS_INLINE vf weighted(const vf& p, const vf& d) { return vselect(vgt(p, 0.0f), p * d, vf{}); }

// The soft divergence of one row (before the T^2 factor) and, for beta > 0, the KL of the
// student against the mixture (reverse KL at beta = 1) that its gradient needs.
struct Divergence {
  double loss, student_kl;
};

Divergence divergence(const float* zs, const float* zt, int64_t V, const LogSoftmax& ls,
                      const LogSoftmax& lt, float beta) {
  const float log_beta = beta > 0.0f ? static_cast<float>(__builtin_log(beta)) : 0.0f;
  const float log_rest = beta < 1.0f ? static_cast<float>(__builtin_log1p(-static_cast<double>(beta))) : 0.0f;
  double loss = 0.0, student_kl = 0.0;
  for (int64_t c0 = 0; c0 < V; c0 += kBlock) {
    const int64_t end = min_i64(c0 + kBlock, V);
    vf acc = vf{}, acc_s = vf{};
    for (int64_t i = c0; i < end; i += kLanes) {
      const vi in = lanes_below(i, V);
      const vf a = ls.at(zs, i), b = lt.at(zt, i);
      if (beta == 0.0f) {
        acc += vselect(in, weighted(vexp(b), b - a), vf{});
      } else if (beta == 1.0f) {
        acc += vselect(in, weighted(vexp(a), a - b), vf{});
      } else {
        const vf lm = log_mix(b + log_beta, a + log_rest);
        const vf term_s = vselect(in, weighted(vexp(a), a - lm), vf{});
        acc += vselect(in, weighted(vexp(b), b - lm), vf{}) * beta + term_s * (1.0f - beta);
        acc_s += term_s;
      }
    }
    loss += static_cast<double>(hsum(acc));
    student_kl += static_cast<double>(hsum(acc_s));
  }
  if (beta == 1.0f) student_kl = loss;
  return Divergence{loss, student_kl};
}

// grad_c = (c_soft * d soft / d z_c [c < V] + c_hard * (p_c - [c == t])) * dz/dx, with
//   d soft / d z_c = p_c - r_c (beta = 0), p_c (a_c - b_c - KL) (beta = 1),
//   (1 - beta) p_c (a_c - lm_c - KL(p || m)) in between (z = capped logits; 1/T inside c_soft).
// For beta = 0 the gradient needs no loss first: it returns the forward KL as well (the same sums
// in the same order as divergence()), so the row is swept once less.
template <typename T, bool kCap>
double row_grad(T* g, const float* zs, const float* zt, int64_t Vs, int64_t V, float cap,
                const LogSoftmax& ls, const LogSoftmax& lt, const LogSoftmax& lh, float beta,
                float student_kl, float c_soft, float c_hard, int64_t t) {
  double forward_kl = 0.0;
  alignas(64) float gb[kBlock];
  const float log_beta = beta > 0.0f ? static_cast<float>(__builtin_log(beta)) : 0.0f;
  const float log_rest = beta < 1.0f ? static_cast<float>(__builtin_log1p(-static_cast<double>(beta))) : 0.0f;
  const float c_mix = c_soft * (1.0f - beta);
  for (int64_t c0 = 0; c0 < Vs; c0 += kBlock) {
    const int64_t n = min_i64(kBlock, Vs - c0);
    vf acc = vf{};
    for (int64_t j = 0; j < n; j += kLanes) {
      const int64_t i = c0 + j;
      vf gv = vf{};
      if (i < V) {
        const vi in = lanes_below(i, V);
        const vf a = ls.at(zs, i), b = lt.at(zt, i);
        const vf p = vexp(a);
        vf soft;
        if (beta == 0.0f) {
          const vf r = vexp(b);
          soft = (p - r) * c_soft;
          acc += vselect(in, weighted(r, b - a), vf{});
        } else if (beta == 1.0f) {
          soft = weighted(p, (a - b) - student_kl) * c_soft;
        } else {
          soft = weighted(p, (a - log_mix(b + log_beta, a + log_rest)) - student_kl) * c_mix;
        }
        gv = vselect(in, soft, vf{});
      }
      if (c_hard != 0.0f) {
        gv += vexp(lh.at(zs, i)) * c_hard;
        const int64_t tt = t - i;
        if (tt >= 0 && tt < kLanes) gv[tt] -= c_hard;
      }
      if (kCap) {
        const vf zc = vload(zs + i) / cap;
        gv = gv * (1.0f - zc * zc);
      }
      vstore(gb + j, gv);
    }
    store_out<false>(gb, g + c0, n);
    if (c0 < V) forward_kl += static_cast<double>(hsum(acc));
  }
  return forward_kl;
}

// The hard part (cross-entropy at T = 1 over the student's row z) into *hard, and the row's
// log-softmax for its gradient; without a target, 0 and an unused log-softmax.
LogSoftmax hard_part(const float* z, int64_t Vs, bool has_target, int64_t t, float* hard) {
  if (!has_target) {
    *hard = 0.0f;
    return LogSoftmax{0.0f, 1.0f, 0.0f};
  }
  const LogSoftmax lh = log_softmax_of(softmax_stats(z, Vs, 1.0f), 1.0f);
  // lse - z_t, kept relative to the max: exact near the max even for logits of 1e4
  *hard = static_cast<float>(static_cast<double>(lh.log_sum) -
                             (static_cast<double>(z[t]) - static_cast<double>(lh.max)));
  return lh;
}

template <typename T>
void zero_row(T* g, int64_t C) {
  alignas(64) float zeros[kBlock];
  fill(zeros, kBlock, 0.0f);
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) store_out<false>(zeros, g + c0, min_i64(kBlock, C - c0));
}

// A row whose target is ignore_index: zero parts and a zero gradient row.
template <typename Args, typename T>
bool ignored_row(const Args& a, int64_t r, T* grad, int64_t Vs) {
  if (!a.target || a.target[r] != a.ignore_index) return false;
  a.soft[r] = 0.0f;
  a.hard[r] = 0.0f;
  if (grad) zero_row<T>(grad + r * Vs, Vs);
  return true;
}

template <typename T, bool kCap>
void rows_typed(const cpu::DistillationRowsArgs& a, int64_t row_begin, int64_t row_end,
                float* scratch) {
  const int64_t Vs = a.student_classes;
  const int64_t V = Vs < a.teacher_classes ? Vs : a.teacher_classes;
  const float cap = static_cast<float>(a.softcap);
  const float inv_t = static_cast<float>(a.inv_temperature);
  const float beta = static_cast<float>(a.beta);
  const double hw = a.hard_weight;
  const T* student = static_cast<const T*>(a.student);
  const T* teacher = static_cast<const T*>(a.teacher);
  T* grad = static_cast<T*>(a.grad);
  float* zs = scratch;
  float* zt = scratch + whole_vectors(Vs);
  for (int64_t r = row_begin; r < row_end; ++r) {
    if (ignored_row(a, r, grad, Vs)) continue;
    const int64_t t = a.target ? a.target[r] : -1;
    load_row<T, kCap>(student + r * a.student_stride, Vs, cap, zs);
    load_row<T, kCap>(teacher + r * a.teacher_stride, V, cap, zt);
    const LogSoftmax ls = log_softmax_of(softmax_stats(zs, V, inv_t), inv_t);
    const LogSoftmax lt = log_softmax_of(softmax_stats(zt, V, inv_t), inv_t);
    // forward KL with a gradient: its loss comes from the gradient sweep
    const bool fused = grad && beta == 0.0f;
    const Divergence d = fused ? Divergence{0.0, 0.0} : divergence(zs, zt, V, ls, lt, beta);
    const LogSoftmax lh = hard_part(zs, Vs, a.target != nullptr, t, a.hard + r);
    if (grad) {
      const float c_soft = static_cast<float>(a.grad_scale * (1.0 - hw) * a.soft_factor * a.inv_temperature);
      const float c_hard = a.target ? static_cast<float>(a.grad_scale * hw) : 0.0f;
      const double kl = row_grad<T, kCap>(grad + r * Vs, zs, zt, Vs, V, cap, ls, lt, lh, beta,
                                          static_cast<float>(d.student_kl), c_soft, c_hard, t);
      a.soft[r] = static_cast<float>(a.soft_factor * (fused ? kl : d.loss));
    } else {
      a.soft[r] = static_cast<float>(a.soft_factor * d.loss);
    }
  }
}

#include "distillation_cpu_topk_impl.h"
#include "distillation_cpu_topk_logprobs_impl.h"

}  // namespace

void distillation_rows(const cpu::DistillationRowsArgs& a, int64_t row_begin, int64_t row_end,
                       float* scratch) {
  visit_elem_type(a.dtype, [&](auto type) {
    using T = typename decltype(type)::type;
    if (a.softcap > 0.0) {
      rows_typed<T, true>(a, row_begin, row_end, scratch);
    } else {
      rows_typed<T, false>(a, row_begin, row_end, scratch);
    }
  });
}

void topk_distillation_rows(const cpu::TopkDistillationRowsArgs& a, int64_t row_begin,
                            int64_t row_end, float* scratch) {
  visit_elem_type(a.dtype, [&](auto type) {
    using T = typename decltype(type)::type;
    if (a.softcap > 0.0) {
      topk_rows_typed<T, true>(a, row_begin, row_end, scratch);
    } else {
      topk_rows_typed<T, false>(a, row_begin, row_end, scratch);
    }
  });
}

void topk_logprobs(const cpu::TopkLogprobsArgs& a, int64_t row_begin, int64_t row_end, float* scratch) {
  visit_elem_type(a.dtype, [&](auto type) {
    using T = typename decltype(type)::type;
    if (a.softcap > 0.0) {
      topk_logprobs_typed<T, true>(a, row_begin, row_end, scratch);
    } else {
      topk_logprobs_typed<T, false>(a, row_begin, row_end, scratch);
    }
  });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
