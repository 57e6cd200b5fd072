// Softmax cross-entropy rows, CUDA. No torch headers: `nvcc -c` checks this file on a machine
// without torch's CUDA headers (see tools/cuda_check.sh). Semantics: cross_entropy.h.
//
// TPR threads own one row (TPR = 32, 128 or 512 by row length; a 256-thread block holds several
// short rows). Pass 1: each thread streams its VEC-wide chunks (16-byte loads when the rows are
// aligned) keeping an online (max, sum exp) pair in float32, plus sum_c w_c z_c in float64 for
// label smoothing; the pairs combine by warp shuffles, then across the row's warps through
// shared memory, in a fixed order (bitwise reproducible). Pass 2 re-reads the same chunks (L2 hits
// for all but the longest rows) and writes the gradient. Every element is read and written by
// one thread only, so grad == logits (in place) is safe. Precise expf/tanhf/logf: no fast math.
//
// Bad target (not ignore_index and outside [0, C)): cross_entropy.h leaves value checks to the
// caller, and on a GPU nobody reads them on the host; such a row's loss and gradient are NaN
// (never an out-of-bounds read), so the error shows instead of passing silently.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "cross_entropy_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {


using cuda_common::neg_inf;
using cuda_common::quiet_nan;

using cuda_common::from_float;
using cuda_common::to_float;

using cuda_common::Pack;

// Online softmax state of a set of values: max m and sum exp(z - m).
struct MaxSum {
  float m;
  float s;
};

__device__ __forceinline__ void online_add(MaxSum& a, float z) {
  if (z > a.m) {
    a.s = a.s * expf(a.m - z) + 1.0f;  // m = -inf: expf(-inf) = 0
    a.m = z;
  } else if (z != neg_inf()) {
    a.s += expf(z - a.m);  // a NaN z lands here and makes s NaN
  }
}

__device__ __forceinline__ MaxSum combine(const MaxSum& a, const MaxSum& b) {
  const float m = fmaxf(a.m, b.m);
  if (m == neg_inf()) return MaxSum{m, a.s + b.s};
  return MaxSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

template <typename T, int VEC, int TPR, bool CAP>
__global__ void __launch_bounds__(TPR >= 256 ? TPR : 256)
    cross_entropy_kernel(const CrossEntropyCudaParams p) {
  constexpr int kThreads = TPR >= 256 ? TPR : 256;
  constexpr int kRowsPerBlock = kThreads / TPR;
  constexpr int kWarps = TPR / 32;  // warps per row
  __shared__ float sh_m[kRowsPerBlock][kWarps];
  __shared__ float sh_s[kRowsPerBlock][kWarps];
  __shared__ double sh_w[kRowsPerBlock][kWarps];

  const int tx = static_cast<int>(threadIdx.x) % TPR;
  const int ty = static_cast<int>(threadIdx.x) / TPR;
  const int lane = tx % 32, warp = tx / 32;
  // int column indices (the glue checks classes < INT_MAX): 64-bit ones would keep nvcc from
  // proving the Pack accesses aligned.
  const int C = static_cast<int>(p.classes);
  const int chunks = C / VEC;
  const int tail_begin = chunks * VEC;
  const float cap = static_cast<float>(p.softcap);
  const double eps = p.label_smoothing;
  const bool smoothing = eps != 0.0;
  const float* w = p.class_weight;
  const T* logits = static_cast<const T*>(p.logits);
  T* grad = static_cast<T*>(p.grad);

  // The trip count is the same for every thread of the block (__syncthreads inside).
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; base < p.rows;
       base += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t row = base + ty;
    const bool active = row < p.rows;
    const T* x = logits + (active ? row : 0) * p.logits_stride;
    const int64_t t = active ? p.target[row] : p.ignore_index;
    const bool ignored = t == p.ignore_index;
    const bool bad_target = !ignored && (t < 0 || t >= C);
    const bool want_weighted = smoothing && !ignored;

    // ---- pass 1: max, sum exp, sum w z
    MaxSum ms{neg_inf(), 0.0f};
    double swz = 0.0;
    if (active) {
      for (int u = tx; u < chunks; u += TPR) {
        const Pack<T, VEC> v = *reinterpret_cast<const Pack<T, VEC>*>(x + u * VEC);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          float z = to_float(v.v[j]);
          if (CAP) z = tanhf(z / cap) * cap;
          if (want_weighted) swz += static_cast<double>(w ? w[u * VEC + j] * z : z);
          online_add(ms, z);
        }
      }
      for (int c = tail_begin + tx; c < C; c += TPR) {
        float z = to_float(x[c]);
        if (CAP) z = tanhf(z / cap) * cap;
        if (want_weighted) swz += static_cast<double>(w ? w[c] * z : z);
        online_add(ms, z);
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const MaxSum o{__shfl_xor_sync(0xffffffffu, ms.m, off),
                     __shfl_xor_sync(0xffffffffu, ms.s, off)};
      ms = combine(ms, o);
      swz += __shfl_xor_sync(0xffffffffu, swz, off);
    }
    if (kWarps > 1) {
      if (lane == 0) {
        sh_m[ty][warp] = ms.m;
        sh_s[ty][warp] = ms.s;
        sh_w[ty][warp] = swz;
      }
      __syncthreads();
      ms = MaxSum{sh_m[ty][0], sh_s[ty][0]};
      swz = sh_w[ty][0];
#pragma unroll
      for (int i = 1; i < kWarps; ++i) {
        ms = combine(ms, MaxSum{sh_m[ty][i], sh_s[ty][i]});
        swz += sh_w[ty][i];
      }
      __syncthreads();  // the next row group reuses sh_*
    }
    if (!active) continue;

    // s >= 1 whenever m is finite: logf is within an ulp of log(s), and exp(m - lse) = 1 / s.
    const double lse = static_cast<double>(ms.m) + static_cast<double>(logf(ms.s));
    float zt = 0.0f;
    double wt = 1.0;
    if (!ignored && !bad_target) {
      zt = to_float(x[t]);
      if (CAP) zt = tanhf(zt / cap) * cap;
      if (w) wt = static_cast<double>(w[t]);
    }
    const double weight_sum = (smoothing && p.weight_sum_device) ? *p.weight_sum_device
                                                                   : p.weight_sum;
    const double eps_c = eps / static_cast<double>(C);
    if (tx == 0) {
      p.lse[row] = static_cast<float>(lse);
      if (ignored) {
        p.loss_rows[row] = 0.0f;
      } else if (bad_target) {
        p.loss_rows[row] = quiet_nan();
      } else {
        double loss = (1.0 - eps) * wt * (lse - static_cast<double>(zt)) + p.z_loss * lse * lse;
        if (smoothing) loss += eps_c * (weight_sum * lse - swz);
        p.loss_rows[row] = static_cast<float>(loss);
      }
    }
    if (grad == nullptr) continue;

    // ---- pass 2: gradient
    T* g = grad + row * static_cast<int64_t>(C);
    if (ignored || bad_target) {
      const T fill = from_float<T>(ignored ? 0.0f : quiet_nan());
      Pack<T, VEC> f;
#pragma unroll
      for (int j = 0; j < VEC; ++j) f.v[j] = fill;
      for (int u = tx; u < chunks; u += TPR) *reinterpret_cast<Pack<T, VEC>*>(g + u * VEC) = f;
      for (int c = tail_begin + tx; c < C; c += TPR) g[c] = fill;
      continue;
    }
    // p_c * a = exp(z_c - m) * (a / s), the factor in float64 (see the CPU kernel), so the
    // gradient near the max carries no rounding error of lse.
    const double a = p.ce_scale * ((1.0 - eps) * wt + eps_c * weight_sum) +
                     p.z_scale * 2.0 * p.z_loss * lse;
    const float pa = static_cast<float>(a / static_cast<double>(ms.s));
    const float b = static_cast<float>(p.ce_scale * eps_c);
    const float d = static_cast<float>(p.ce_scale * (1.0 - eps) * wt);
    const float m = ms.m;
    const bool all_neg_inf = m == neg_inf();
    const int ti = static_cast<int>(t);
    auto grad_of = [&](float xv, int c) {
      float z = xv;
      if (CAP) z = tanhf(z / cap) * cap;
      const float e = all_neg_inf ? 0.0f : expf(z - m);
      float gv = e * pa;
      gv = gv - (w ? w[c] * b : b);
      if (c == ti) gv -= d;
      if (CAP) {
        const float zc = z / cap;
        gv = gv * (1.0f - zc * zc);
      }
      return gv;
    };
    for (int u = tx; u < chunks; u += TPR) {
      const Pack<T, VEC> v = *reinterpret_cast<const Pack<T, VEC>*>(x + u * VEC);
      Pack<T, VEC> o;
#pragma unroll
      for (int j = 0; j < VEC; ++j) o.v[j] = from_float<T>(grad_of(to_float(v.v[j]), u * VEC + j));
      *reinterpret_cast<Pack<T, VEC>*>(g + u * VEC) = o;
    }
    for (int c = tail_begin + tx; c < C; c += TPR) g[c] = from_float<T>(grad_of(to_float(x[c]), c));
  }
}

__global__ void weight_sum_kernel(const float* w, int64_t n, double* out) {
  // One block, fixed order: per-thread strided partial sums, then a shared-memory tree.
  __shared__ double part[256];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(w[i]);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int width = 128; width > 0; width >>= 1) {
    if (static_cast<int>(threadIdx.x) < width) part[threadIdx.x] += part[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = part[0];
}

bool aligned(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0;
}

template <typename T>
bool can_vectorise(const CrossEntropyCudaParams& p, int vec) {
  const int64_t bytes = vec * static_cast<int64_t>(sizeof(T));
  const auto elem = static_cast<int64_t>(sizeof(T));
  if (!aligned(p.logits, bytes)) return false;
  if (p.rows > 1 && (p.logits_stride * elem) % bytes != 0) return false;
  if (p.grad != nullptr) {
    if (!aligned(p.grad, bytes)) return false;
    if (p.rows > 1 && (p.classes * elem) % bytes != 0) return false;
  }
  return true;
}

template <typename T, int VEC, int TPR, bool CAP>
cudaError_t launch_config(const CrossEntropyCudaParams& p, cudaStream_t stream) {
  constexpr int kThreads = TPR >= 256 ? TPR : 256;
  constexpr int kRowsPerBlock = kThreads / TPR;
  const int64_t blocks =
      std::min<int64_t>((p.rows + kRowsPerBlock - 1) / kRowsPerBlock, int64_t{1} << 20);
  cross_entropy_kernel<T, VEC, TPR, CAP>
      <<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int VEC, bool CAP>
cudaError_t launch_vec(const CrossEntropyCudaParams& p, cudaStream_t stream) {
  const int64_t chunks = std::max<int64_t>(p.classes / VEC, 1);
  if (chunks <= 64) return launch_config<T, VEC, 32, CAP>(p, stream);
  if (chunks <= 1024) return launch_config<T, VEC, 128, CAP>(p, stream);
  return launch_config<T, VEC, 512, CAP>(p, stream);
}

template <typename T, bool CAP>
cudaError_t launch_cap(const CrossEntropyCudaParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  if (can_vectorise<T>(p, kVec)) return launch_vec<T, kVec, CAP>(p, stream);
  if (sizeof(T) == 2 && can_vectorise<T>(p, 2)) return launch_vec<T, 2, CAP>(p, stream);
  return launch_vec<T, 1, CAP>(p, stream);
}

}  // namespace

template <typename T>
cudaError_t launch_cross_entropy(const CrossEntropyCudaParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.classes <= 0 || p.classes >= INT_MAX - 16) return cudaErrorInvalidValue;
  return p.softcap > 0.0 ? launch_cap<T, true>(p, stream) : launch_cap<T, false>(p, stream);
}

cudaError_t launch_weight_sum(const float* class_weight, int64_t classes, double* out,
                              cudaStream_t stream) {
  weight_sum_kernel<<<1, 256, 0, stream>>>(class_weight, classes, out);
  return cudaGetLastError();
}

template cudaError_t launch_cross_entropy<float>(const CrossEntropyCudaParams&, cudaStream_t);
template cudaError_t launch_cross_entropy<__half>(const CrossEntropyCudaParams&, cudaStream_t);
template cudaError_t launch_cross_entropy<__nv_bfloat16>(const CrossEntropyCudaParams&,
                                                         cudaStream_t);

}  // namespace llmkernels
