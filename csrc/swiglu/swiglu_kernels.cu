// Gated units (SwiGLU, GeGLU), CUDA. No torch headers: `nvcc -c` must check this file on a
// machine without torch's CUDA headers (see tools/cuda_check.sh).
//
// A block walks rows (grid-stride), its threads the columns of a row, VEC elements per access
// where every row start is 16-byte aligned (one 16-byte load per operand), else one at a time.
// The forward and the backward share the loop, the activation a template parameter; it is
// recomputed from gate in the backward. expf of a huge argument is inf, giving sigmoid 0 exactly
// (never NaN from finite input).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "swiglu_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {

using cuda_common::from_float;
using cuda_common::Pack;
using cuda_common::to_float;

struct Silu {
  __device__ __forceinline__ static void value_and_derivative(float g, float& act, float& dact) {
    const float s = 1.0f / (1.0f + expf(-g));
    act = g * s;
    dact = s * (1.0f + g * (1.0f - s));
  }
};

// gelu(g) = g Phi(g); gelu' = Phi(g) + g phi(g). Huge |g|: erff saturates, expf gives 0.
struct Gelu {
  __device__ __forceinline__ static void value_and_derivative(float g, float& act, float& dact) {
    const float cdf = 0.5f * (1.0f + erff(g * 0.70710678118654752f));
    act = g * cdf;
    dact = cdf + g * (expf(-0.5f * g * g) * 0.39894228040143268f);
  }
};

// The tanh approximation; past |g| = 10 t is +-1 exactly, and the clamp keeps g^3 finite there
// (inf * 0 would be NaN from a finite gate).
struct GeluTanh {
  __device__ __forceinline__ static void value_and_derivative(float g, float& act, float& dact) {
    constexpr float k = 0.79788456080286536f, c = 0.044715f;
    const float gc = fminf(fmaxf(g, -10.0f), 10.0f);
    const float t = tanhf(k * (gc + c * gc * gc * gc));
    act = 0.5f * g * (1.0f + t);
    dact = 0.5f * (1.0f + t) + 0.5f * gc * (1.0f - t * t) * k * (1.0f + 3.0f * c * gc * gc);
  }
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_at(const void* base, int64_t row, int64_t stride,
                                                int col) {
  return *reinterpret_cast<const Pack<T, VEC>*>(static_cast<const T*>(base) + row * stride + col);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_at(void* base, int64_t row, int64_t stride, int col,
                                         const Pack<T, VEC>& v) {
  *reinterpret_cast<Pack<T, VEC>*>(static_cast<T*>(base) + row * stride + col) = v;
}

template <typename Act, typename T, int VEC>
__device__ __forceinline__ void forward_unit(const SwigluCudaParams& p, int64_t row, int col) {
  const Pack<T, VEC> g = load_at<T, VEC>(p.gate, row, p.gate_stride, col);
  const Pack<T, VEC> u = load_at<T, VEC>(p.up, row, p.up_stride, col);
  Pack<T, VEC> y;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    float act, dact;
    Act::value_and_derivative(to_float(g.v[j]), act, dact);
    y.v[j] = from_float<T>(act * to_float(u.v[j]));
  }
  store_at<T, VEC>(p.out, row, p.out_stride, col, y);
}

template <typename Act, typename T, int VEC>
__device__ __forceinline__ void backward_unit(const SwigluCudaParams& p, int64_t row, int col) {
  const Pack<T, VEC> dy = load_at<T, VEC>(p.grad, row, p.grad_stride, col);
  const Pack<T, VEC> g = load_at<T, VEC>(p.gate, row, p.gate_stride, col);
  const Pack<T, VEC> u = load_at<T, VEC>(p.up, row, p.up_stride, col);
  Pack<T, VEC> dg, du;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    float act, dact;
    Act::value_and_derivative(to_float(g.v[j]), act, dact);
    const float d = to_float(dy.v[j]);
    du.v[j] = from_float<T>(d * act);
    dg.v[j] = from_float<T>(d * to_float(u.v[j]) * dact);
  }
  store_at<T, VEC>(p.grad_gate, row, p.grad_gate_stride, col, dg);
  store_at<T, VEC>(p.grad_up, row, p.grad_up_stride, col, du);
}

template <typename Act, typename T, int VEC, bool BACKWARD>
__global__ void swiglu_kernel(const SwigluCudaParams p) {
  // 32-bit columns (the launcher checks cols fits): with 64-bit ones nvcc cannot prove the Pack
  // accesses aligned and splits them.
  const int cols = static_cast<int>(p.cols);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    for (int col = static_cast<int>(threadIdx.x) * VEC; col < cols;
         col += static_cast<int>(blockDim.x) * VEC) {
      if constexpr (BACKWARD) backward_unit<Act, T, VEC>(p, row, col);
      else forward_unit<Act, T, VEC>(p, row, col);
    }
  }
}

bool aligned(const void* ptr, int64_t stride, int64_t bytes, int64_t elem_bytes) {
  return ptr == nullptr || (reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0 &&
                            (stride * elem_bytes) % bytes == 0);
}

// VEC elements per access need every row start of every operand aligned to VEC elements and
// whole packs per row (an operand the pass does not use is null and never in the way).
template <typename T>
bool can_vectorise(const SwigluCudaParams& p, int vec) {
  const int64_t elem = static_cast<int64_t>(sizeof(T));
  const int64_t bytes = vec * elem;
  if (bytes > 16 || p.cols % vec != 0) return false;
  return aligned(p.gate, p.gate_stride, bytes, elem) && aligned(p.up, p.up_stride, bytes, elem) &&
         aligned(p.grad, p.grad_stride, bytes, elem) && aligned(p.out, p.out_stride, bytes, elem) &&
         aligned(p.grad_gate, p.grad_gate_stride, bytes, elem) &&
         aligned(p.grad_up, p.grad_up_stride, bytes, elem);
}

template <typename Act, typename T, int VEC, bool BACKWARD>
cudaError_t launch_vec(const SwigluCudaParams& p, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t units = (p.cols + VEC - 1) / VEC;
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (units + 31) / 32 * 32));
  const int64_t blocks = std::min<int64_t>(p.rows, INT_MAX);
  swiglu_kernel<Act, T, VEC, BACKWARD>
      <<<static_cast<unsigned int>(blocks), threads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename Act, typename T, bool BACKWARD>
cudaError_t launch_act(const SwigluCudaParams& p, cudaStream_t stream) {
  constexpr int kVec = static_cast<int>(16 / sizeof(T));
  if (can_vectorise<T>(p, kVec)) return launch_vec<Act, T, kVec, BACKWARD>(p, stream);
  if (can_vectorise<T>(p, 2)) return launch_vec<Act, T, 2, BACKWARD>(p, stream);
  return launch_vec<Act, T, 1, BACKWARD>(p, stream);
}

template <typename T, bool BACKWARD>
cudaError_t launch(const SwigluCudaParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.cols > INT_MAX - 16) return cudaErrorInvalidValue;
  switch (p.activation) {
    case kSilu: return launch_act<Silu, T, BACKWARD>(p, stream);
    case kGelu: return launch_act<Gelu, T, BACKWARD>(p, stream);
    case kGeluTanh: return launch_act<GeluTanh, T, BACKWARD>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

template <typename T>
cudaError_t launch_swiglu_forward(const SwigluCudaParams& params, cudaStream_t stream) {
  return launch<T, false>(params, stream);
}

template <typename T>
cudaError_t launch_swiglu_backward(const SwigluCudaParams& params, cudaStream_t stream) {
  return launch<T, true>(params, stream);
}

template cudaError_t launch_swiglu_forward<float>(const SwigluCudaParams&, cudaStream_t);
template cudaError_t launch_swiglu_forward<__half>(const SwigluCudaParams&, cudaStream_t);
template cudaError_t launch_swiglu_forward<__nv_bfloat16>(const SwigluCudaParams&, cudaStream_t);
template cudaError_t launch_swiglu_backward<float>(const SwigluCudaParams&, cudaStream_t);
template cudaError_t launch_swiglu_backward<__half>(const SwigluCudaParams&, cudaStream_t);
template cudaError_t launch_swiglu_backward<__nv_bfloat16>(const SwigluCudaParams&, cudaStream_t);

}  // namespace llmkernels
