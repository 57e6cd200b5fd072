// Top-k distillation rows: included by distillation_cpu_kernel_impl.h inside its unnamed
// namespace (it uses that file's helpers). No include guard on purpose.
//
// Buckets b: the k teacher ids (singletons) and, when k < Vs, a tail with every other column.
// With q_b the student's bucket mass, r_b the teacher's (tail: max(0, 1 - sum r)), the gradient
// of a divergence D(r, q) w.r.t. the student's scaled logit of column i in bucket b is
// p_i * (G_b - sum_b' q_b' G_b'), G_b = dD / dq_b; per bucket h_b = G_b - that mean:
//   forward KL: h_b = R - r_b / q_b (R = sum r_b);  reverse KL: h_b = log q_b - log r_b - KL;
//   generalised JSD: h_b = (1 - beta) (log q_b - log m_b - KL(q || m)).
// The tail's mass is summed with its own max, so its log stays exact when its terms underflow
// against the row's max.

struct Bucket {
  double lq, lr;  // log q_b, log r_b (-inf when r_b = 0)
};

LLMK_ALWAYS_INLINE double plogratio(double lp, double lo) {  // e^lp (lp - lo), 0 log 0 = 0
  return lp == -__builtin_inf() ? 0.0 : __builtin_exp(lp) * (lp - lo);
}

LLMK_ALWAYS_INLINE double log_add(double x, double y) {
  const double hi = x > y ? x : y, lo = x > y ? y : x;
  return hi == -__builtin_inf() ? hi : hi + __builtin_log1p(__builtin_exp(lo - hi));
}

// The divergence over the buckets; h[b] as above.
double bucket_divergence(const Bucket* bk, int64_t nb, double beta, float* h) {
  double loss = 0.0, kl = 0.0, mass = 0.0;
  const double log_beta = beta > 0.0 ? __builtin_log(beta) : 0.0;
  const double log_rest = beta < 1.0 ? __builtin_log1p(-beta) : 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    if (beta == 0.0) {
      loss += plogratio(bk[b].lr, bk[b].lq);
      mass += bk[b].lr == -__builtin_inf() ? 0.0 : __builtin_exp(bk[b].lr);
    } else if (beta == 1.0) {
      loss += plogratio(bk[b].lq, bk[b].lr);
    } else {
      const double lm = log_add(bk[b].lr + log_beta, bk[b].lq + log_rest);
      loss += beta * plogratio(bk[b].lr, lm) + (1.0 - beta) * plogratio(bk[b].lq, lm);
      kl += plogratio(bk[b].lq, lm);
    }
  }
  if (beta == 1.0) kl = loss;
  for (int64_t b = 0; b < nb; ++b) {
    double hb;
    if (beta == 0.0) {
      hb = mass - (bk[b].lr == -__builtin_inf() ? 0.0 : __builtin_exp(bk[b].lr - bk[b].lq));
    } else if (beta == 1.0) {
      hb = (bk[b].lq - bk[b].lr) - kl;
    } else {
      hb = (1.0 - beta) * ((bk[b].lq - log_add(bk[b].lr + log_beta, bk[b].lq + log_rest)) - kl);
    }
    h[b] = static_cast<float>(hb);
  }
  return loss;
}

template <typename T, bool kCap>
void topk_rows_typed(const cpu::TopkDistillationRowsArgs& a, int64_t row_begin, int64_t row_end,
                     float* scratch) {
  const int64_t Vs = a.student_classes, k = a.k;
  const bool has_tail = k < Vs;
  const int64_t nb = has_tail ? k + 1 : k;
  const float cap = static_cast<float>(a.softcap);
  const float inv_t = static_cast<float>(a.inv_temperature);
  const T* student = static_cast<const T*>(a.student);
  T* grad = static_cast<T*>(a.grad);
  // scratch: [zs: R(Vs)][gf: R(Vs)][h: k + 1][saved: k + 1][pad][buckets: k + 1, 8-byte aligned]
  float* zs = scratch;
  float* gf = scratch + whole_vectors(Vs);
  float* h = gf + whole_vectors(Vs);
  float* saved = h + (k + 1);
  const int64_t bucket_at = (whole_vectors(Vs) * 2 + 2 * (k + 1) + 1) / 2 * 2;
  Bucket* buckets = reinterpret_cast<Bucket*>(scratch + bucket_at);
  for (int64_t r = row_begin; r < row_end; ++r) {
    if (ignored_row(a, r, grad, Vs)) continue;
    const int64_t t = a.target ? a.target[r] : -1;
    const int64_t* ids = a.ids + r * k;
    const float* lp = a.logprobs + r * k;
    load_row<T, kCap>(student + r * a.student_stride, Vs, cap, zs);
    const LogSoftmax ls = log_softmax_of(softmax_stats(zs, Vs, inv_t), inv_t);
    double teacher_mass = 0.0;
    Bucket tail{-__builtin_inf(), -__builtin_inf()};
    for (int64_t j = 0; j < k; ++j) teacher_mass += __builtin_exp(static_cast<double>(lp[j]));
    if (has_tail) {
      for (int64_t j = 0; j < k; ++j) {
        saved[j] = zs[ids[j]];
        zs[ids[j]] = -__builtin_inff();
      }
      const Stats rest = softmax_stats(zs, Vs, inv_t);
      for (int64_t j = 0; j < k; ++j) zs[ids[j]] = saved[j];
      tail.lq = (static_cast<double>(rest.max) - ls.max) * inv_t + __builtin_log(rest.sum) - ls.log_sum;
      const double rest_mass = 1.0 - teacher_mass;
      // Never below float32's smallest normal number: a finite reverse KL (reference.py).
      tail.lr = __builtin_log(rest_mass > 0x1p-126 ? rest_mass : 0x1p-126);
    }
    for (int64_t j = 0; j < k; ++j) {
      buckets[j].lq = (static_cast<double>(zs[ids[j]]) - ls.max) * inv_t - ls.log_sum;
      buckets[j].lr = static_cast<double>(lp[j]);
    }
    if (has_tail) buckets[k] = tail;
    const double loss = bucket_divergence(buckets, nb, a.beta, h);
    a.soft[r] = static_cast<float>(a.soft_factor * loss);
    const LogSoftmax lh = hard_part(zs, Vs, a.target != nullptr, t, a.hard + r);
    if (!grad) continue;
    const float c_soft = static_cast<float>(a.grad_scale * (1.0 - a.hard_weight) * a.soft_factor * a.inv_temperature);
    const float c_hard = a.target ? static_cast<float>(a.grad_scale * a.hard_weight) : 0.0f;
    const float h_tail = has_tail ? h[k] * c_soft : 0.0f;
    const double teacher_mass_or_one = has_tail ? (teacher_mass > 1.0 ? teacher_mass : 1.0) : teacher_mass;
    const int64_t nv = whole_vectors(Vs);
    for (int64_t i = 0; i < nv; i += kLanes) {
      vf gv = vexp(ls.at(zs, i)) * h_tail;
      if (c_hard != 0.0f) gv += vexp(lh.at(zs, i)) * c_hard;
      vstore(gf + i, gv);
    }
    for (int64_t j = 0; j < k; ++j) {  // the singleton buckets replace the tail's coefficient
      const int64_t c = ids[j];
      const float p = static_cast<float>(__builtin_exp((static_cast<double>(zs[c]) - ls.max) * inv_t - ls.log_sum));
      const float ph = c_hard != 0.0f ? static_cast<float>(__builtin_exp(
                                            (static_cast<double>(zs[c]) - lh.max) - lh.log_sum)) : 0.0f;
      // forward KL: p (R - r / q) = p R - r for a singleton, without the ratio
      const float soft = a.beta == 0.0 ? static_cast<float>(static_cast<double>(p) * teacher_mass_or_one -
                                                             __builtin_exp(static_cast<double>(lp[j])))
                                       : p * h[j];
      gf[c] = soft * c_soft + ph * c_hard;
    }
    if (c_hard != 0.0f) gf[t] -= c_hard;
    if (kCap) {
      for (int64_t i = 0; i < nv; i += kLanes) {
        const vf zc = vload(zs + i) / cap;
        vstore(gf + i, vload(gf + i) * (1.0f - zc * zc));
      }
    }
    for (int64_t c0 = 0; c0 < Vs; c0 += kBlock) store_out<false>(gf + c0, grad + r * Vs + c0, min_i64(kBlock, Vs - c0));
  }
}
