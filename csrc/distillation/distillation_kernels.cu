// Distillation rows, CUDA. No torch headers: `nvcc -c` checks this file on a machine without
// torch's CUDA headers (see tools/cuda_check.sh). Semantics: distillation.h.
//
// One 256-thread block per row pair. Pass 1: each thread keeps online (max, sum exp) pairs of
// s/T and t/T over the shared V columns and of s over the student's row (hard part), strided
// over the columns; the pairs combine across the block in a fixed order (bitwise reproducible).
// Pass 2 sums the divergence (and the student's KL against the mixture, for the gradient);
// pass 3 writes the gradient. Log-probabilities are (y - max) - log(sum), never y - lse. Each
// gradient element is read and written by one thread only, so grad == student is safe.
// A bad target (not ignore_index and outside [0, Vs)) makes the row's hard part and gradient NaN,
// never an out-of-bounds read. Precise expf/logf: no fast math.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "distillation_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {

#include "distillation_cuda_common.cuh"

template <typename T, bool CAP>
__global__ void __launch_bounds__(kThreads) distillation_kernel(const DistillationCudaParams p) {
  __shared__ Softmax sh_softmax[kWarps];
  __shared__ float sh_sum[kWarps];
  const int64_t row = blockIdx.x;
  const T* s = static_cast<const T*>(p.student) + row * p.student_stride;
  const T* t = static_cast<const T*>(p.teacher) + row * p.teacher_stride;
  T* g = p.grad ? static_cast<T*>(p.grad) + row * p.student_classes : nullptr;
  const int64_t Vs = p.student_classes;
  const int64_t V = Vs < p.teacher_classes ? Vs : p.teacher_classes;
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
  const bool bad_target = p.target && (target < 0 || target >= Vs);

  Softmax ss{neg_inf(), 0.0f}, st{neg_inf(), 0.0f}, sh{neg_inf(), 0.0f};
  for (int64_t c = threadIdx.x; c < Vs; c += kThreads) {
    const float zs = capped<CAP>(to_float(s[c]), cap);
    if (c < V) {
      add_value(ss, zs * inv_t);
      add_value(st, capped<CAP>(to_float(t[c]), cap) * inv_t);
    }
    if (p.target) add_value(sh, zs);
  }
  ss = block_merge(ss, sh_softmax);
  st = block_merge(st, sh_softmax);
  sh = block_merge(sh, sh_softmax);
  const float log_ss = logf(ss.sum), log_st = logf(st.sum), log_sh = logf(sh.sum);
  const float log_beta = beta > 0.0f ? logf(beta) : 0.0f;
  const float log_rest = beta < 1.0f ? log1pf(-beta) : 0.0f;

  float loss = 0.0f, student_kl = 0.0f;
  for (int64_t c = threadIdx.x; c < V; c += kThreads) {
    const float a = (capped<CAP>(to_float(s[c]), cap) * inv_t - ss.max) - log_ss;
    const float b = (capped<CAP>(to_float(t[c]), cap) * inv_t - st.max) - log_st;
    if (beta == 0.0f) {
      loss += weighted(expf(b), b - a);
    } else if (beta == 1.0f) {
      loss += weighted(expf(a), a - b);
    } else {
      const float lm = log_mix(b + log_beta, a + log_rest);
      const float term_s = weighted(expf(a), a - lm);
      loss += beta * weighted(expf(b), b - lm) + (1.0f - beta) * term_s;
      student_kl += term_s;
    }
  }
  loss = block_sum(loss, sh_sum);
  student_kl = beta == 1.0f ? loss : block_sum(student_kl, sh_sum);
  if (threadIdx.x == 0) {
    p.soft[row] = p.soft_factor * loss;
    if (!p.target) {
      p.hard[row] = 0.0f;
    } else if (bad_target) {
      p.hard[row] = quiet_nan();
    } else {
      p.hard[row] = log_sh - (capped<CAP>(to_float(s[target]), cap) - sh.max);
    }
  }
  if (!g) return;
  __syncthreads();  // thread 0 has read s[target] before anyone writes g (it may be s itself)
  for (int64_t c = threadIdx.x; c < Vs; c += kThreads) {
    const float zs = capped<CAP>(to_float(s[c]), cap);
    float grad = 0.0f;
    if (c < V) {
      const float a = (zs * inv_t - ss.max) - log_ss;
      const float b = (capped<CAP>(to_float(t[c]), cap) * inv_t - st.max) - log_st;
      const float pa = expf(a);
      if (beta == 0.0f) {
        grad = (pa - expf(b)) * p.c_soft;
      } else if (beta == 1.0f) {
        grad = weighted(pa, (a - b) - student_kl) * p.c_soft;
      } else {
        grad = weighted(pa, (a - log_mix(b + log_beta, a + log_rest)) - student_kl) * (p.c_soft * (1.0f - beta));
      }
    }
    if (p.target && p.c_hard != 0.0f) {
      grad += p.c_hard * (expf((zs - sh.max) - log_sh) - (c == target ? 1.0f : 0.0f));
    }
    if (bad_target) grad = quiet_nan();
    if (CAP) {
      const float zc = zs / cap;
      grad *= 1.0f - zc * zc;
    }
    g[c] = from_float<T>(grad);
  }
}

}  // namespace

template <typename T>
cudaError_t launch_distillation(const DistillationCudaParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>(p.rows));
  if (p.softcap > 0.0f) {
    distillation_kernel<T, true><<<grid, kThreads, 0, stream>>>(p);
  } else {
    distillation_kernel<T, false><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template cudaError_t launch_distillation<float>(const DistillationCudaParams&, cudaStream_t);
template cudaError_t launch_distillation<__half>(const DistillationCudaParams&, cudaStream_t);
template cudaError_t launch_distillation<__nv_bfloat16>(const DistillationCudaParams&,
                                                        cudaStream_t);

}  // namespace llmkernels
