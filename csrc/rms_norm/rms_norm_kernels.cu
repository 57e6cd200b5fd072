// RMSNorm rows (with the fused residual add), CUDA. No torch headers: `nvcc -c` checks this file
// on a machine without torch's CUDA headers (see tools/cuda_check.sh). Semantics: rms_norm.h.
//
// Forward: one 256-thread block per row; each thread strides the row's columns, sums squares in
// float32 (and stores h), the block reduces the sums in a fixed order (warp shuffles, then warp
// sums in warp order), and a second sweep re-reads the row (L1/L2 hits) to write y. Backward: one
// block per block of rows (the fixed partition of block_rows), the same two sweeps per row, and
// each column's grad_y * xhat added, in row order, to the block's partial row by the one thread
// that owns the column; a last kernel sums the partial rows per column in block order. Every
// reduction has one fixed order: results are bitwise reproducible run to run.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "rms_norm_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {

using cuda_common::from_float;
using cuda_common::to_float;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Sum of v over the block, the same bits in every thread; `shared` holds kWarps floats.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  __syncthreads();  // a previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kWarps; ++w) total += shared[w];
  return total;
}

template <typename T, bool kResidual, bool kWeight>
__global__ void __launch_bounds__(kThreads) rms_norm_forward_kernel(const RmsNormForwardParams p) {
  __shared__ float shared[kWarps];
  const int64_t row = blockIdx.x;
  const int dim = static_cast<int>(p.dim);
  const T* x = static_cast<const T*>(p.x) + row * p.x_stride;
  const T* r = kResidual ? static_cast<const T*>(p.residual) + row * p.residual_stride : nullptr;
  T* h = kResidual ? static_cast<T*>(p.h) + row * p.h_stride : nullptr;
  float ss = 0.0f;
  for (int c = static_cast<int>(threadIdx.x); c < dim; c += kThreads) {
    float v = to_float(x[c]);
    if (kResidual) {
      const T stored = from_float<T>(v + to_float(r[c]));
      h[c] = stored;
      v = to_float(stored);  // y normalises the h the op returns
    }
    ss += v * v;
  }
  const float rstd = 1.0f / sqrtf(block_sum(ss, shared) / static_cast<float>(dim) + p.eps);
  if (threadIdx.x == 0) p.rstd[row] = rstd;
  T* y = static_cast<T*>(p.y) + row * p.y_stride;
  const T* src = kResidual ? h : x;  // this thread wrote these h columns itself
  for (int c = static_cast<int>(threadIdx.x); c < dim; c += kThreads) {
    float v = to_float(src[c]) * rstd;
    if (kWeight) v = v * p.weight[c];
    y[c] = from_float<T>(v);
  }
}

template <typename T, bool kGradH, bool kWeight, bool kPartial>
__global__ void __launch_bounds__(kThreads) rms_norm_backward_kernel(const RmsNormBackwardParams p) {
  __shared__ float shared[kWarps];
  const int dim = static_cast<int>(p.dim);
  const float inv_dim = 1.0f / static_cast<float>(dim);
  const int64_t first = static_cast<int64_t>(blockIdx.x) * p.block_rows;
  const int64_t last = first + p.block_rows < p.rows ? first + p.block_rows : p.rows;
  float* part = kPartial ? p.partial + static_cast<int64_t>(blockIdx.x) * dim : nullptr;
  for (int64_t row = first; row < last; ++row) {
    const T* dy = static_cast<const T*>(p.grad_y) + row * p.grad_y_stride;
    const T* inp = static_cast<const T*>(p.inp) + row * p.inp_stride;
    const float rstd = p.rstd[row];
    float dot = 0.0f;
    for (int c = static_cast<int>(threadIdx.x); c < dim; c += kThreads) {
      const float g = kWeight ? to_float(dy[c]) * p.weight[c] : to_float(dy[c]);
      dot += g * (to_float(inp[c]) * rstd);
    }
    const float mean = block_sum(dot, shared) * inv_dim;
    const T* gh = kGradH ? static_cast<const T*>(p.grad_h) + row * p.grad_h_stride : nullptr;
    T* dx = static_cast<T*>(p.dx) + row * p.dx_stride;
    for (int c = static_cast<int>(threadIdx.x); c < dim; c += kThreads) {
      const float d = to_float(dy[c]);
      const float xhat = to_float(inp[c]) * rstd;
      const float g = kWeight ? d * p.weight[c] : d;
      float v = (g - xhat * mean) * rstd;
      if (kGradH) v += to_float(gh[c]);
      dx[c] = from_float<T>(v);
      if (kPartial) part[c] = (row == first ? 0.0f : part[c]) + d * xhat;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    rms_norm_sum_partials_kernel(const float* partial, float* dweight, int64_t blocks, int64_t dim) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= dim) return;
  float total = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) total += partial[b * dim + c];
  dweight[c] = total;
}

// Calls f(bool_constant<a>, bool_constant<b>) as template arguments.
template <bool B>
struct Flag {
  static constexpr bool value = B;
};
template <typename F>
cudaError_t with_flags(bool a, bool b, const F& f) {
  if (a) return b ? f(Flag<true>{}, Flag<true>{}) : f(Flag<true>{}, Flag<false>{});
  return b ? f(Flag<false>{}, Flag<true>{}) : f(Flag<false>{}, Flag<false>{});
}

}  // namespace

template <typename T>
cudaError_t launch_rms_norm_forward(const RmsNormForwardParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return with_flags(p.residual != nullptr, p.weight != nullptr, [&](auto residual, auto weight) {
    rms_norm_forward_kernel<T, decltype(residual)::value, decltype(weight)::value>
        <<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

template <typename T>
cudaError_t launch_rms_norm_backward(const RmsNormBackwardParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const int64_t blocks = (p.rows + p.block_rows - 1) / p.block_rows;
  const bool partial = p.partial != nullptr;
  const cudaError_t err = with_flags(p.grad_h != nullptr, p.weight != nullptr, [&](auto grad_h, auto weight) {
    if (partial)
      rms_norm_backward_kernel<T, decltype(grad_h)::value, decltype(weight)::value, true>
          <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    else
      rms_norm_backward_kernel<T, decltype(grad_h)::value, decltype(weight)::value, false>
          <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
  if (err != cudaSuccess || !partial) return err;
  const unsigned column_blocks = static_cast<unsigned>((p.dim + kThreads - 1) / kThreads);
  rms_norm_sum_partials_kernel<<<column_blocks, kThreads, 0, stream>>>(p.partial, p.dweight, blocks,
                                                                      p.dim);
  return cudaGetLastError();
}

template cudaError_t launch_rms_norm_forward<float>(const RmsNormForwardParams&, cudaStream_t);
template cudaError_t launch_rms_norm_forward<__half>(const RmsNormForwardParams&, cudaStream_t);
template cudaError_t launch_rms_norm_forward<__nv_bfloat16>(const RmsNormForwardParams&,
                                                            cudaStream_t);
template cudaError_t launch_rms_norm_backward<float>(const RmsNormBackwardParams&, cudaStream_t);
template cudaError_t launch_rms_norm_backward<__half>(const RmsNormBackwardParams&,
                                                      cudaStream_t);
template cudaError_t launch_rms_norm_backward<__nv_bfloat16>(const RmsNormBackwardParams&,
                                                             cudaStream_t);

}  // namespace llmkernels
