// Block-wide helpers of the distillation CUDA kernels (distillation_kernels.cu, distillation_topk_cuda.cu):
// one copy. No torch headers. Included inside namespace llmkernels { namespace { ... } } of each
// .cu file, after cuda_convert.cuh; kThreads threads a block.
#pragma once

using cuda_common::from_float, cuda_common::neg_inf, cuda_common::quiet_nan, cuda_common::to_float;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

struct Softmax {  // max and sum exp(y - max) of a set of values y
  float max, sum;
};

__device__ __forceinline__ Softmax merge(Softmax a, Softmax b) {
  const float m = fmaxf(a.max, b.max);
  if (m == neg_inf()) return Softmax{m, 0.0f};
  return Softmax{m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

// Block-wide merge in a fixed order: warps by xor-shuffles, then warp results in order.
__device__ Softmax block_merge(Softmax v, Softmax* shared) {
  for (int off = 16; off > 0; off >>= 1) {
    const Softmax o{__shfl_xor_sync(0xffffffffu, v.max, off), __shfl_xor_sync(0xffffffffu, v.sum, off)};
    v = merge(v, o);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  Softmax total = shared[0];
  for (int w = 1; w < kWarps; ++w) total = merge(total, shared[w]);
  __syncthreads();
  return total;
}

// A block-wide sum in a fixed order (float or double); every thread gets it.
template <typename A>
__device__ A block_sum(A v, A* shared) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  A total = 0;
  for (int w = 0; w < kWarps; ++w) total += shared[w];
  __syncthreads();
  return total;
}

// A block-wide max; every thread gets it.
__device__ float block_max(float v, float* shared) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = shared[0];
  for (int w = 1; w < kWarps; ++w) total = fmaxf(total, shared[w]);
  __syncthreads();
  return total;
}

__device__ __forceinline__ void add_value(Softmax& acc, float y) {
  if (y > acc.max) {
    acc.sum = acc.sum * expf(acc.max - y) + 1.0f;
    acc.max = y;
  } else {
    acc.sum += expf(y - acc.max);
  }
}

template <bool CAP>
__device__ __forceinline__ float capped(float x, float cap) {
  return CAP ? cap * tanhf(x / cap) : x;
}

// p * d with 0 * anything = 0: a probability of 0 (a logit of -inf) adds nothing to p log(p / q).
__device__ __forceinline__ float weighted(float p, float d) { return p > 0.0f ? p * d : 0.0f; }

__device__ __forceinline__ float log_mix(float x, float y) {  // log(e^x + e^y)
  const float hi = fmaxf(x, y), lo = fminf(x, y);
  return hi + log1pf(expf(lo - hi));
}
