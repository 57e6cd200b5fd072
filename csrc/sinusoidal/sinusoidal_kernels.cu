// Sinusoidal position encoding, CUDA: out = x * scale + PE[pos], PE computed on the fly with
// precise sinf/cosf (sincosf; this file must not be built with fast-math). No torch headers.
//
// A 1-D grid-stride loop over rows (b, s); a block is (tx, ty): ty rows, tx threads along a
// row, each owning E consecutive columns (E even: E / 2 whole (sin, cos) pairs). A thread reads
// its columns before writing them and no other thread touches them, so out == x is safe.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "sinusoidal_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {

using cuda_common::from_float;
using cuda_common::to_float;

using cuda_common::Pack;

// x * scale + pe, rounded after each op like the eager reference (no FMA contraction).
__device__ __forceinline__ float scale_add(float x, float scale, float pe) {
  return __fadd_rn(__fmul_rn(x, scale), pe);
}

template <typename T, int E>
__global__ void add_sinusoidal_kernel(const SinusoidalCudaParams p, const int64_t rows) {
  // 32-bit column indices (the launcher checks d_model fits): with 64-bit ones nvcc cannot
  // prove the Pack store aligned and splits it into scalar stores.
  const int d_model = static_cast<int>(p.d_model);
  const int units = (d_model + E - 1) / E;  // exact for E > 1 (launcher checks d_model % E)

  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t s = row % p.seq;
    const int64_t b = row / p.seq;
    const T* x = static_cast<const T*>(p.x) + b * p.x_stride_b + s * p.x_stride_s;
    T* y = static_cast<T*>(p.out) + b * p.out_stride_b + s * p.out_stride_s;
    const int64_t pos =
        p.position_ids != nullptr ? p.position_ids[b * p.position_batch_stride + s] : s;
    const float posf = static_cast<float>(pos);

    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const int c0 = u * E;
      if constexpr (E == 1) {
        // column c: sin for even c, cos for odd, of angle index c / 2 (odd d_model: the last
        // column is even, so it is the sin of i = d_model / 2)
        const float angle = posf * p.inv_freq[c0 >> 1];
        const float pe = (c0 & 1) ? cosf(angle) : sinf(angle);
        y[c0] = from_float<T>(scale_add(to_float(x[c0]), p.scale, pe));
      } else {
        const Pack<T, E> v = *reinterpret_cast<const Pack<T, E>*>(x + c0);
        Pack<T, E> o;
#pragma unroll
        for (int j = 0; j < E / 2; ++j) {
          const float angle = posf * p.inv_freq[(c0 >> 1) + j];
          float sn, cs;
          sincosf(angle, &sn, &cs);
          o.v[2 * j] = from_float<T>(scale_add(to_float(v.v[2 * j]), p.scale, sn));
          o.v[2 * j + 1] = from_float<T>(scale_add(to_float(v.v[2 * j + 1]), p.scale, cs));
        }
        *reinterpret_cast<Pack<T, E>*>(y + c0) = o;
      }
    }
  }
}

bool aligned_ptr(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0;
}

template <typename T>
bool can_vectorise(const SinusoidalCudaParams& p, int e) {
  const int64_t elem = static_cast<int64_t>(sizeof(T));
  const int64_t bytes = e * elem;
  if (bytes > 16 || p.d_model % e != 0) return false;
  auto stride_ok = [&](int64_t size, int64_t stride) {
    return size <= 1 || (stride * elem) % bytes == 0;
  };
  return aligned_ptr(p.x, bytes) && aligned_ptr(p.out, bytes) && stride_ok(p.batch, p.x_stride_b) &&
         stride_ok(p.seq, p.x_stride_s) && stride_ok(p.batch, p.out_stride_b) &&
         stride_ok(p.seq, p.out_stride_s);
}

int next_pow2(int64_t n) {
  int r = 1;
  while (r < n && r < (1 << 30)) r <<= 1;
  return r;
}

template <typename T, int E>
cudaError_t launch_e(const SinusoidalCudaParams& p, cudaStream_t stream) {
  const int64_t rows = p.batch * p.seq;
  if (rows == 0 || p.d_model == 0) return cudaSuccess;
  if (p.d_model > INT_MAX - 16) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  const int64_t units = (p.d_model + E - 1) / E;
  const int tx = std::min(kThreads, next_pow2(units));
  const int ty = kThreads / tx;
  const int64_t blocks = std::min<int64_t>((rows + ty - 1) / ty, INT_MAX);
  add_sinusoidal_kernel<T, E>
      <<<static_cast<unsigned int>(blocks), dim3(tx, ty), 0, stream>>>(p, rows);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t launch_add_sinusoidal(const SinusoidalCudaParams& params, cudaStream_t stream) {
  if constexpr (sizeof(T) <= 2) {  // 8 elements in one 16-byte access
    if (can_vectorise<T>(params, 8)) return launch_e<T, 8>(params, stream);
  }
  if (can_vectorise<T>(params, 4)) return launch_e<T, 4>(params, stream);
  if (can_vectorise<T>(params, 2)) return launch_e<T, 2>(params, stream);
  return launch_e<T, 1>(params, stream);
}

template cudaError_t launch_add_sinusoidal<float>(const SinusoidalCudaParams&, cudaStream_t);
template cudaError_t launch_add_sinusoidal<__half>(const SinusoidalCudaParams&, cudaStream_t);
template cudaError_t launch_add_sinusoidal<__nv_bfloat16>(const SinusoidalCudaParams&,
                                                          cudaStream_t);

}  // namespace llmkernels
