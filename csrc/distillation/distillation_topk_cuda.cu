// The top-k teacher on CUDA: the top-k distillation rows and topk_logprobs. No torch headers
// (`nvcc -c` checks this file without torch's CUDA headers). Semantics: distillation.h; the same
// algorithms as the Triton kernels (llmkernels/ops/distillation/triton_topk.py), one 256-thread
// block per row, every block-wide reduction in a fixed order (bitwise reproducible).
//
// Rows: the student's tail mass is S - S_ids, both sums of the same float32 terms in float64;
// below kTailExact of S that difference loses digits and the row takes an exact pass (each column
// tested against the ids: O(V k / threads), for rows whose tail is that small). The gradient
// goes in three steps split by barriers (grad may be the student): the ids' gradients into the
// scratch, the tail's into every column, then the ids' from the scratch over theirs. An id or a
// target out of range makes the row NaN, never an out-of-bounds access.
//
// topk_logprobs: each column is a 64-bit key (its raw logit's bits mapped to an unsigned order
// above, 2^32 - 1 - id below: distinct keys, equal logits rank the smaller id first; softcap
// and temperature are increasing, so raw logits rank as the log-probabilities do). A radix select
// over 8-bit digits finds the k-th largest key (stopping at the first digit whose bin is taken
// whole); the keys at or above it go to the scratch, and each one's output slot is the number
// of chosen keys above it.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "distillation_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {

#include "distillation_cuda_common.cuh"

constexpr double kTailExact = 1e-5;

template <typename T, bool CAP>
__device__ __forceinline__ float z_at(const T* row, int64_t c, float cap) {
  return capped<CAP>(to_float(row[c]), cap);
}

// 1 - tanh^2(x / cap), the softcap's derivative at raw x.
__device__ __forceinline__ float cap_slope(float z, float cap) {
  const float zc = z / cap;
  return 1.0f - zc * zc;
}

// Per bucket of student / teacher log-masses a, b: (divergence term, student-vs-mixture term).
__device__ __forceinline__ void bucket_terms(float a, float b, float beta, float log_beta, float log_rest,
                                             float& loss, float& term_s) {
  if (beta == 0.0f) {
    loss = weighted(expf(b), b - a);
    term_s = loss;
  } else if (beta == 1.0f) {
    loss = weighted(expf(a), a - b);
    term_s = loss;
  } else {
    const float lm = log_mix(b + log_beta, a + log_rest);
    term_s = weighted(expf(a), a - lm);
    loss = beta * weighted(expf(b), b - lm) + (1.0f - beta) * term_s;
  }
}

// d soft / d(scaled logit) per unit of p for a bucket (see distillation_cpu_topk_impl.h).
__device__ __forceinline__ float bucket_slope(float a, float b, float kl, float mass, float beta, float log_beta,
                                              float log_rest) {
  if (beta == 0.0f) return mass - (b == neg_inf() ? 0.0f : expf(b - a));
  if (beta == 1.0f) return (a - b) - kl;
  return (1.0f - beta) * ((a - log_mix(b + log_beta, a + log_rest)) - kl);
}

template <typename T, bool CAP>
__global__ void __launch_bounds__(kThreads) topk_rows_kernel(const TopkDistillationCudaParams p) {
  __shared__ Softmax sh_softmax[kWarps];
  __shared__ float sh_float[kWarps];
  __shared__ double sh_double[kWarps];
  const int64_t row = blockIdx.x, Vs = p.classes, K = p.k;
  const T* s = static_cast<const T*>(p.student) + row * p.student_stride;
  const int64_t* ids = p.ids + row * K;
  const float* lp = p.logprobs + row * K;
  T* g = p.grad ? static_cast<T*>(p.grad) + row * Vs : nullptr;
  const float cap = p.softcap, inv_t = p.inv_temperature, beta = p.beta;
  int64_t target = -1;
  if (p.target) {
    target = p.target[row];
    if (target == p.ignore_index) {
      if (threadIdx.x == 0) p.soft[row] = p.hard[row] = 0.0f;
      for (int64_t c = threadIdx.x; g && c < Vs; c += kThreads) g[c] = from_float<T>(0.0f);
      return;
    }
  }
  bool bad = p.target && (target < 0 || target >= Vs);

  float ms = neg_inf();
  Softmax sh{neg_inf(), 0.0f};
  for (int64_t c = threadIdx.x; c < Vs; c += kThreads) {
    const float z = z_at<T, CAP>(s, c, cap);
    ms = fmaxf(ms, z * inv_t);
    if (p.target) add_value(sh, z);
  }
  ms = block_max(ms, sh_float);
  sh = block_merge(sh, sh_softmax);
  double total = 0.0, chosen = 0.0, teacher_mass = 0.0;
  for (int64_t c = threadIdx.x; c < Vs; c += kThreads) total += expf(z_at<T, CAP>(s, c, cap) * inv_t - ms);
  int bad_id = 0;
  for (int64_t j = threadIdx.x; j < K; j += kThreads) {
    const int64_t c = ids[j];
    if (c < 0 || c >= Vs) {
      bad_id = 1;
      continue;
    }
    chosen += expf(z_at<T, CAP>(s, c, cap) * inv_t - ms);
    teacher_mass += exp(static_cast<double>(lp[j]));
  }
  total = block_sum(total, sh_double);
  chosen = block_sum(chosen, sh_double);
  teacher_mass = block_sum(teacher_mass, sh_double);
  bad = bad || __syncthreads_or(bad_id);
  const float log_s = logf(static_cast<float>(total));

  const bool has_tail = K < Vs;
  float lq_tail = 0.0f, lr_tail = 0.0f;
  if (has_tail) {
    const double rest = total - chosen;
    if (rest > kTailExact * total) {
      lq_tail = static_cast<float>(log(rest / total));
    } else {  // the tail's own (max, sum) over the columns no id names
      Softmax tail{neg_inf(), 0.0f};
      for (int64_t c = threadIdx.x; c < Vs; c += kThreads) {
        bool named = false;
        for (int64_t j = 0; j < K && !named; ++j) named = ids[j] == c;
        if (!named) add_value(tail, z_at<T, CAP>(s, c, cap) * inv_t);
      }
      tail = block_merge(tail, sh_softmax);
      lq_tail = ((tail.max - ms) + logf(tail.sum)) - log_s;
    }
    const double r_tail = 1.0 - teacher_mass;
    // Never below float32's smallest normal number: a finite reverse KL (ops/distillation/reference.py).
    lr_tail = static_cast<float>(log(r_tail > 0x1p-126 ? r_tail : 0x1p-126));
  }

  const float log_beta = beta > 0.0f ? logf(beta) : 0.0f;
  const float log_rest = beta < 1.0f ? log1pf(-beta) : 0.0f;
  float loss = 0.0f, student_kl = 0.0f;
  for (int64_t j = threadIdx.x; j < K; j += kThreads) {
    const int64_t c = ids[j];
    if (c < 0 || c >= Vs) continue;
    float term, term_s;
    bucket_terms((z_at<T, CAP>(s, c, cap) * inv_t - ms) - log_s, lp[j], beta, log_beta, log_rest, term, term_s);
    loss += term;
    student_kl += term_s;
  }
  loss = block_sum(loss, sh_float);
  student_kl = block_sum(student_kl, sh_float);
  if (has_tail) {
    float term, term_s;
    bucket_terms(lq_tail, lr_tail, beta, log_beta, log_rest, term, term_s);
    loss += term;
    student_kl += term_s;
  }
  if (threadIdx.x == 0) {
    p.soft[row] = bad ? quiet_nan() : p.soft_factor * loss;
    if (!p.target) {
      p.hard[row] = 0.0f;
    } else if (bad) {
      p.hard[row] = quiet_nan();
    } else {
      p.hard[row] = logf(sh.sum) - (z_at<T, CAP>(s, target, cap) - sh.max);
    }
  }
  if (!g) return;
  const float mass = has_tail ? fmaxf(static_cast<float>(teacher_mass), 1.0f) : static_cast<float>(teacher_mass);
  const float log_sh = logf(sh.sum);
  float* scratch = p.scratch + row * K;
  for (int64_t j = threadIdx.x; j < K; j += kThreads) {
    const int64_t c = ids[j];
    if (c < 0 || c >= Vs) continue;
    const float z = z_at<T, CAP>(s, c, cap);
    const float a = (z * inv_t - ms) - log_s, pa = expf(a);
    float grad = beta == 0.0f ? pa * mass - expf(lp[j])  // p (R - r / q) without the ratio
                              : weighted(pa, bucket_slope(a, lp[j], student_kl, mass, beta, log_beta, log_rest));
    grad *= p.c_soft;
    if (p.target && p.c_hard != 0.0f) grad += p.c_hard * (expf((z - sh.max) - log_sh) - (c == target ? 1.0f : 0.0f));
    if (CAP) grad *= cap_slope(z, cap);
    scratch[j] = grad;
  }
  __syncthreads();  // every read of the student is done before grad (maybe the student) is written
  const float h_tail = has_tail ? bucket_slope(lq_tail, lr_tail, student_kl, mass, beta, log_beta, log_rest) : 0.0f;
  for (int64_t c = threadIdx.x; c < Vs; c += kThreads) {
    const float z = z_at<T, CAP>(s, c, cap);
    float grad = has_tail ? weighted(expf((z * inv_t - ms) - log_s), h_tail) * p.c_soft : 0.0f;
    if (p.target && p.c_hard != 0.0f) grad += p.c_hard * (expf((z - sh.max) - log_sh) - (c == target ? 1.0f : 0.0f));
    if (CAP) grad *= cap_slope(z, cap);
    g[c] = from_float<T>(bad ? quiet_nan() : grad);
  }
  __syncthreads();  // the ids' gradients replace the tail's there
  for (int64_t j = threadIdx.x; j < K; j += kThreads) {
    const int64_t c = ids[j];
    if (c >= 0 && c < Vs) g[c] = from_float<T>(bad ? quiet_nan() : scratch[j]);
  }
}

// ---- topk_logprobs ------------------------------------------------------------------------------

__device__ __forceinline__ unsigned long long column_key(float x, int64_t c) {
  const unsigned int bits = __float_as_uint(x);
  const unsigned int ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) | (0xFFFFFFFFull - static_cast<unsigned long long>(c));
}

template <typename T, bool CAP>
__global__ void __launch_bounds__(kThreads) topk_logprobs_kernel(const TopkLogprobsCudaParams p) {
  __shared__ Softmax sh_softmax[kWarps];
  __shared__ unsigned int bins[256];
  __shared__ unsigned long long sh_prefix;
  __shared__ int sh_shift;
  __shared__ long long sh_needed;
  __shared__ unsigned int sh_count;
  constexpr int kTile = 1024;
  __shared__ unsigned long long tile[kTile];
  const int64_t row = blockIdx.x, V = p.classes, K = p.k;
  const T* x = static_cast<const T*>(p.logits) + row * p.stride;
  const float cap = p.softcap, inv_t = p.inv_temperature;

  Softmax st{neg_inf(), 0.0f};
  for (int64_t c = threadIdx.x; c < V; c += kThreads) add_value(st, z_at<T, CAP>(x, c, cap) * inv_t);
  st = block_merge(st, sh_softmax);
  const float log_s = logf(st.sum);

  // radix select: the keys whose top (64 - shift) bits are >= prefix's are the k largest
  if (threadIdx.x == 0) {
    sh_prefix = 0;
    sh_shift = 64;
    sh_needed = K;
  }
  __syncthreads();
  for (int shift = 56; shift >= 0; shift -= 8) {
    const unsigned long long prefix = sh_prefix;
    for (int b = threadIdx.x; b < 256; b += kThreads) bins[b] = 0;
    __syncthreads();
    for (int64_t c = threadIdx.x; c < V; c += kThreads) {
      const unsigned long long key = column_key(to_float(x[c]), c);
      if (shift == 56 || (key >> (shift + 8)) == (prefix >> (shift + 8))) {
        atomicAdd(&bins[(key >> shift) & 0xFF], 1u);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long needed = sh_needed;
      int b = 255;
      for (; b > 0 && static_cast<long long>(bins[b]) < needed; --b) needed -= bins[b];
      sh_prefix = prefix | (static_cast<unsigned long long>(b) << shift);
      sh_needed = needed;
      // the bin holds exactly what is still needed (or this is the last digit): done at this shift
      sh_shift = (static_cast<long long>(bins[b]) == needed || shift == 0) ? shift : 64;
    }
    __syncthreads();
    if (sh_shift == shift) break;
  }
  const int shift = sh_shift;
  const unsigned long long bound = sh_prefix >> shift;

  // the chosen keys into the scratch (any order), then each one's slot by the count above it
  unsigned long long* chosen = p.scratch + row * K;
  if (threadIdx.x == 0) sh_count = 0;
  __syncthreads();
  for (int64_t c = threadIdx.x; c < V; c += kThreads) {
    const unsigned long long key = column_key(to_float(x[c]), c);
    if ((key >> shift) >= bound) {
      const unsigned int at = atomicAdd(&sh_count, 1u);
      if (at < K) chosen[at] = key;
    }
  }
  __syncthreads();
  for (int64_t base = 0; base < K; base += kThreads) {
    const int64_t j = base + threadIdx.x;
    const unsigned long long mine = j < K ? chosen[j] : 0ull;
    int64_t rank = 0;
    for (int64_t t0 = 0; t0 < K; t0 += kTile) {
      const int64_t n = K - t0 < kTile ? K - t0 : kTile;
      for (int64_t i = threadIdx.x; i < n; i += kThreads) tile[i] = chosen[t0 + i];
      __syncthreads();
      for (int64_t i = 0; i < n; ++i) rank += tile[i] > mine;
      __syncthreads();
    }
    if (j < K) {
      const int64_t c = static_cast<int64_t>(0xFFFFFFFFull - (mine & 0xFFFFFFFFull));
      p.ids[row * K + rank] = static_cast<int32_t>(c);
      p.logprobs[row * K + rank] = (z_at<T, CAP>(x, c, cap) * inv_t - st.max) - log_s;
    }
  }
}

}  // namespace

template <typename T>
cudaError_t launch_topk_distillation(const TopkDistillationCudaParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>(p.rows));
  if (p.softcap > 0.0f) {
    topk_rows_kernel<T, true><<<grid, kThreads, 0, stream>>>(p);
  } else {
    topk_rows_kernel<T, false><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_topk_logprobs(const TopkLogprobsCudaParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>(p.rows));
  if (p.softcap > 0.0f) {
    topk_logprobs_kernel<T, true><<<grid, kThreads, 0, stream>>>(p);
  } else {
    topk_logprobs_kernel<T, false><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

#define LLMK_INSTANTIATE(T)                                                                       \
  template cudaError_t launch_topk_distillation<T>(const TopkDistillationCudaParams&, cudaStream_t); \
  template cudaError_t launch_topk_logprobs<T>(const TopkLogprobsCudaParams&, cudaStream_t);
LLMK_INSTANTIATE(float)
LLMK_INSTANTIATE(__half)
LLMK_INSTANTIATE(__nv_bfloat16)
#undef LLMK_INSTANTIATE

}  // namespace llmkernels
