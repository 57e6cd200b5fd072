// Rotary position embedding, CUDA. No torch headers: `nvcc -c` must check this file on a
// machine without torch's CUDA headers (see tools/cuda_check.sh).
//
// One launch covers q and k: a 1-D grid-stride loop over rows (b, h, s) of q followed by the
// rows of k, so GQA (heads_q != heads_k) needs nothing special and no grid dimension can
// exceed its limit. A block is (tx, ty): ty rows side by side, tx threads along a row. Each
// thread owns VEC angle indices of a row: it loads both elements of each of its pairs into
// registers before it stores either, and no other thread touches them, so out == in is safe.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "rotary_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace {

using cuda_common::from_float;
using cuda_common::to_float;

using cuda_common::Pack;

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

// a' = a cos - b sin; b' = b cos + a sin (sin already negated for the conjugate). Explicit
// _rn ops keep nvcc from contracting into FMAs, so fp32 results round like the eager
// reference (x * cos + rotate_half(x) * sin).
__device__ __forceinline__ void rotate(float a, float b, float c, float s, float& ao, float& bo) {
  ao = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  bo = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}

template <typename T, int VEC, bool INTERLEAVED>
__global__ void rotary_kernel(const RotaryCudaParams p, const int64_t rows_q,
                              const int64_t total_rows) {
  // 32-bit column indices (the launcher checks head_dim fits): with 64-bit ones nvcc cannot
  // prove the Pack accesses aligned and splits them into scalar ones.
  const int head_dim = static_cast<int>(p.head_dim);
  const int rotary_dim = static_cast<int>(p.rotary_dim);
  const int half = rotary_dim / 2;
  const int units = half / VEC;  // VEC pairs per unit
  const float sin_sign = p.conjugate ? -1.0f : 1.0f;

  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < total_rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const bool is_q = row < rows_q;
    const RotaryCudaOperand op = is_q ? p.q : p.k;
    const int64_t local = is_q ? row : row - rows_q;
    const int64_t s = local % p.seq;
    const int64_t bh = local / p.seq;
    const int64_t h = bh % op.heads;
    const int64_t b = bh / op.heads;

    const T* x = static_cast<const T*>(op.in) + b * op.in_stride_b + h * op.in_stride_h +
                 s * op.in_stride_s;
    T* y = static_cast<T*>(op.out) + b * op.out_stride_b + h * op.out_stride_h +
           s * op.out_stride_s;
    const int64_t pos =
        p.position_ids != nullptr ? p.position_ids[b * p.position_batch_stride + s] : s;
    const float* cos_row = p.cos + pos * half;
    const float* sin_row = p.sin + pos * half;

    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const int i0 = u * VEC;
      const Pack<float, VEC> c = load_pack<float, VEC>(cos_row + i0);
      const Pack<float, VEC> sn = load_pack<float, VEC>(sin_row + i0);
      if constexpr (INTERLEAVED && VEC == 1) {
        // unvectorised fallback: the pair may not be aligned to 2 elements
        const float a = to_float(x[2 * i0]);
        const float bv = to_float(x[2 * i0 + 1]);
        float ao, bo;
        rotate(a, bv, c.v[0], sin_sign * sn.v[0], ao, bo);
        y[2 * i0] = from_float<T>(ao);
        y[2 * i0 + 1] = from_float<T>(bo);
      } else if constexpr (INTERLEAVED) {
        // pairs (2i, 2i + 1): 2 * VEC adjacent elements
        const Pack<T, 2 * VEC> v = load_pack<T, 2 * VEC>(x + 2 * i0);
        Pack<T, 2 * VEC> o;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          float ao, bo;
          rotate(to_float(v.v[2 * j]), to_float(v.v[2 * j + 1]), c.v[j], sin_sign * sn.v[j], ao,
                 bo);
          o.v[2 * j] = from_float<T>(ao);
          o.v[2 * j + 1] = from_float<T>(bo);
        }
        store_pack<T, 2 * VEC>(y + 2 * i0, o);
      } else {
        // pairs (i, i + half)
        const Pack<T, VEC> va = load_pack<T, VEC>(x + i0);
        const Pack<T, VEC> vb = load_pack<T, VEC>(x + half + i0);
        Pack<T, VEC> oa, ob;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          float ao, bo;
          rotate(to_float(va.v[j]), to_float(vb.v[j]), c.v[j], sin_sign * sn.v[j], ao, bo);
          oa.v[j] = from_float<T>(ao);
          ob.v[j] = from_float<T>(bo);
        }
        store_pack<T, VEC>(y + i0, oa);
        store_pack<T, VEC>(y + half + i0, ob);
      }
    }

    if (op.copy_passthrough) {
      for (int col = rotary_dim + static_cast<int>(threadIdx.x) * VEC; col < head_dim;
           col += static_cast<int>(blockDim.x) * VEC) {
        store_pack<T, VEC>(y + col, load_pack<T, VEC>(x + col));
      }
    }
  }
}

bool aligned_ptr(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0;
}

// Every row start of `op` is a multiple of `bytes` (a size-1 dim's stride never matters).
bool operand_aligned(const RotaryCudaOperand& op, int64_t batch, int64_t seq, int64_t elem_bytes,
                     int64_t bytes) {
  auto stride_ok = [&](int64_t size, int64_t stride) {
    return size <= 1 || (stride * elem_bytes) % bytes == 0;
  };
  return aligned_ptr(op.in, bytes) && aligned_ptr(op.out, bytes) &&
         stride_ok(batch, op.in_stride_b) && stride_ok(op.heads, op.in_stride_h) &&
         stride_ok(seq, op.in_stride_s) && stride_ok(batch, op.out_stride_b) &&
         stride_ok(op.heads, op.out_stride_h) && stride_ok(seq, op.out_stride_s);
}

template <typename T>
bool can_vectorise(const RotaryCudaParams& p, int vec) {
  const int64_t elem = static_cast<int64_t>(sizeof(T));
  const int64_t half = p.rotary_dim / 2;
  const int64_t access_elems = p.interleaved ? 2 * vec : vec;
  const int64_t access_bytes = access_elems * elem;
  if (access_bytes > 16 || half % vec != 0) return false;
  // The pass-through copy moves VEC elements at a time from column rotary_dim (a multiple of
  // 2 * VEC, so aligned whenever the row start is).
  const bool copies = (p.q.copy_passthrough || (p.k.heads > 0 && p.k.copy_passthrough)) &&
                      p.head_dim > p.rotary_dim;
  if (copies && (p.head_dim - p.rotary_dim) % vec != 0) return false;
  if (!aligned_ptr(p.cos, vec * 4) || !aligned_ptr(p.sin, vec * 4)) return false;
  if (!operand_aligned(p.q, p.batch, p.seq, elem, access_bytes)) return false;
  if (p.k.heads > 0 && !operand_aligned(p.k, p.batch, p.seq, elem, access_bytes)) return false;
  return true;
}

int next_pow2(int64_t n) {
  int r = 1;
  while (r < n && r < (1 << 30)) r <<= 1;
  return r;
}

template <typename T, int VEC, bool INTERLEAVED>
cudaError_t launch_vec(const RotaryCudaParams& p, cudaStream_t stream) {
  const int64_t rows_q = p.batch * p.q.heads * p.seq;
  const int64_t rows_k = p.k.heads > 0 ? p.batch * p.k.heads * p.seq : 0;
  const int64_t total_rows = rows_q + rows_k;
  if (total_rows == 0 || p.head_dim == 0) return cudaSuccess;
  if (p.head_dim > INT_MAX - 16) return cudaErrorInvalidValue;

  constexpr int kThreads = 256;
  const int64_t units = p.rotary_dim / 2 / VEC;
  const int64_t copy_units = (p.head_dim - p.rotary_dim + VEC - 1) / VEC;
  const int tx = std::min(128, next_pow2(std::max<int64_t>({units, copy_units, 1})));
  const int ty = kThreads / tx;
  const int64_t blocks = std::min<int64_t>((total_rows + ty - 1) / ty, INT_MAX);
  rotary_kernel<T, VEC, INTERLEAVED><<<static_cast<unsigned int>(blocks), dim3(tx, ty), 0,
                                       stream>>>(p, rows_q, total_rows);
  return cudaGetLastError();
}

template <typename T, bool INTERLEAVED>
cudaError_t launch_layout(const RotaryCudaParams& p, cudaStream_t stream) {
  if (can_vectorise<T>(p, 4)) return launch_vec<T, 4, INTERLEAVED>(p, stream);
  if (can_vectorise<T>(p, 2)) return launch_vec<T, 2, INTERLEAVED>(p, stream);
  return launch_vec<T, 1, INTERLEAVED>(p, stream);
}

}  // namespace

template <typename T>
cudaError_t launch_rotary(const RotaryCudaParams& params, cudaStream_t stream) {
  const RotaryCudaParams& p = params;
  return p.interleaved ? launch_layout<T, true>(p, stream) : launch_layout<T, false>(p, stream);
}

template cudaError_t launch_rotary<float>(const RotaryCudaParams&, cudaStream_t);
template cudaError_t launch_rotary<__half>(const RotaryCudaParams&, cudaStream_t);
template cudaError_t launch_rotary<__nv_bfloat16>(const RotaryCudaParams&, cudaStream_t);

}  // namespace llmkernels
