// Shared device code of the flash-attention CUDA kernels (attention_cuda_forward.cu,
// attention_cuda_backward.cu). No torch headers.
//
// Every kernel runs 4 warps and stages its tiles in shared memory: operand tiles in the input
// dtype (head dim zero-padded to the tile DT, rows past the sequence zero-filled), score and
// accumulator tiles in float32. Products go through block_gemm: nvcuda::wmma 16x16x16 tensor-core
// tiles with float32 accumulation for fp16/bf16, plain (IEEE) FMA loops for fp32. Simple and
// uniform over the four products of the backward; not the fastest possible layout.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "attention_cuda_launch.h"

#include "../common/cuda_convert.cuh"

namespace llmkernels {
namespace attn_cuda {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

using cuda_common::neg_inf;

using cuda_common::from_float;
using cuda_common::to_float;

// Shared-memory leading dimensions (elements): padded against bank conflicts, and keeping every
// 16-row / 16-column wmma tile 32-byte aligned (16-bit: ld % 8 == 0; float: ld % 4 == 0).
template <int DT>
struct Ld {
  static constexpr int tile = DT + 8;  // operand tiles in T
  static constexpr int acc = DT + 4;   // float accumulators over the head dim
};
template <int BN>
struct LdScore {
  static constexpr int f32 = BN + 4;  // float score tiles
  static constexpr int t = BN + 8;    // score tiles in T
};

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

__host__ __device__ constexpr int round128(int bytes) { return (bytes + 127) / 128 * 128; }

// C[m][n] (+)= sum_k A(m, k) * B(k, n) over an M x N x K block product, all in shared memory.
// A(m, k) = A_COL ? a[k * lda + m] : a[m * lda + k];  B(k, n) = B_COL ? b[n * ldb + k] : b[k * ldb + n].
// c is float, row-major, ldc. Every thread of the block must call it (no barrier inside: the
// caller syncs before reading c).
template <typename T, int M, int N, int K, bool A_COL, bool B_COL, bool ACC>
__device__ __forceinline__ void block_gemm(const T* a, int lda, const T* b, int ldb, float* c,
                                           int ldc) {
  if constexpr (std::is_same<T, float>::value) {
    for (int idx = threadIdx.x; idx < M * N; idx += kThreads) {
      const int m = idx / N, n = idx % N;
      float acc = ACC ? c[m * ldc + n] : 0.0f;
#pragma unroll 8
      for (int k = 0; k < K; ++k) {
        const float av = A_COL ? a[k * lda + m] : a[m * lda + k];
        const float bv = B_COL ? b[n * ldb + k] : b[k * ldb + n];
        acc = fmaf(av, bv, acc);
      }
      c[m * ldc + n] = acc;
    }
  } else {
    namespace wmma = nvcuda::wmma;
    static_assert(M % 16 == 0 && N % 16 == 0 && K % 16 == 0, "wmma tiles are 16x16x16");
    using ALayout = typename std::conditional<A_COL, wmma::col_major, wmma::row_major>::type;
    using BLayout = typename std::conditional<B_COL, wmma::col_major, wmma::row_major>::type;
    constexpr int kTilesN = N / 16;
    constexpr int kTiles = (M / 16) * kTilesN;
    const int warp = threadIdx.x / 32;
    for (int tile = warp; tile < kTiles; tile += kWarps) {
      const int m0 = (tile / kTilesN) * 16, n0 = (tile % kTilesN) * 16;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      if (ACC) {
        wmma::load_matrix_sync(acc, c + m0 * ldc + n0, ldc, wmma::mem_row_major);
      } else {
        wmma::fill_fragment(acc, 0.0f);
      }
#pragma unroll 4
      for (int k0 = 0; k0 < K; k0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, ALayout> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> fb;
        wmma::load_matrix_sync(fa, A_COL ? a + k0 * lda + m0 : a + m0 * lda + k0, lda);
        wmma::load_matrix_sync(fb, B_COL ? b + n0 * ldb + k0 : b + k0 * ldb + n0, ldb);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(c + m0 * ldc + n0, acc, ldc, wmma::mem_row_major);
    }
  }
}

// Copies rows [row0, row0 + ROWS) x columns [0, DT) of one (S, D) head into a shared tile;
// rows >= seq and columns >= head_dim read as zero (so they add nothing to any product).
template <typename T, int ROWS, int DT>
__device__ __forceinline__ void load_tile(T* dst, int ld, const T* head, int64_t stride_s,
                                          int64_t row0, int64_t seq, int head_dim) {
  for (int idx = threadIdx.x; idx < ROWS * DT; idx += kThreads) {
    const int r = idx / DT, col = idx % DT;
    const int64_t row = row0 + r;
    T val = from_float<T>(0.0f);
    if (row < seq && col < head_dim) val = head[row * stride_s + col];
    dst[r * ld + col] = val;
  }
}

// The (S, D) head h of batch b of an operand.
template <typename T>
__device__ __forceinline__ const T* head_of(const AttentionCudaOperand& o, int64_t b, int64_t h) {
  return static_cast<const T*>(o.ptr) + b * o.stride_b + h * o.stride_h;
}

// Loads rows [n0, n0 + BN) of key head k_head and value head v_head into k_s, v_s.
template <typename T, int BN, int DT>
__device__ __forceinline__ void load_kv_tiles(const AttentionCudaParams& p, const T* k_head,
                                              const T* v_head, int64_t n0, T* k_s, T* v_s) {
  const int D = static_cast<int>(p.head_dim);
  load_tile<T, BN, DT>(k_s, Ld<DT>::tile, k_head, p.k.stride_s, n0, p.seq_k, D);
  load_tile<T, BN, DT>(v_s, Ld<DT>::tile, v_head, p.v.stride_s, n0, p.seq_k, D);
}

template <int ROWS, int COLS>
__device__ __forceinline__ void zero_f32(float* dst, int ld) {
  for (int idx = threadIdx.x; idx < ROWS * COLS; idx += kThreads) {
    dst[(idx / COLS) * ld + idx % COLS] = 0.0f;
  }
}

// The score rules of attention.h for one (batch, head): s = scale * q.k; softcap; ALiBi; masks.
struct ScoreRule {
  float scale, softcap, slope;  // slope 0 when ALiBi is off
  bool causal, alibi;
  int64_t window_left, window_right, offset, seq_q, seq_k;
  const uint8_t* kpm_row;  // (Sk,) of this batch row, or null

  __device__ __forceinline__ bool visible(int64_t i, int64_t j) const {
    if (i >= seq_q || j >= seq_k) return false;
    const int64_t diag = i + offset;
    if (causal && j > diag) return false;
    if (window_left >= 0 && j < diag - window_left) return false;
    if (window_right >= 0 && j > diag + window_right) return false;
    if (kpm_row != nullptr && kpm_row[j] == 0) return false;
    return true;
  }

  // Final score of q_i.k_j = dot, or -inf when masked; *cap_grad = d s_capped / d s_scaled.
  __device__ __forceinline__ float score(float dot, int64_t i, int64_t j, float* cap_grad) const {
    *cap_grad = 0.0f;
    if (!visible(i, j)) return neg_inf();
    float s = scale * dot;
    *cap_grad = 1.0f;
    if (softcap > 0.0f) {
      s = softcap * tanhf(s / softcap);
      const float r = s / softcap;
      *cap_grad = 1.0f - r * r;
    }
    if (alibi) s += -slope * fabsf(static_cast<float>(i + offset - j));
    return s;
  }
};

__device__ __forceinline__ ScoreRule make_rule(const AttentionCudaParams& p, int64_t b,
                                               int64_t h) {
  ScoreRule r;
  r.scale = p.scale;
  r.softcap = p.softcap;
  r.alibi = p.alibi_slopes != nullptr;
  r.slope = r.alibi ? p.alibi_slopes[b * p.heads_q + h] : 0.0f;
  r.causal = p.causal;
  r.window_left = p.window_left;
  r.window_right = p.window_right;
  r.offset = p.seq_k - p.seq_q;
  r.seq_q = p.seq_q;
  r.seq_k = p.seq_k;
  r.kpm_row = p.key_padding_mask != nullptr ? p.key_padding_mask + b * p.seq_k : nullptr;
  return r;
}

// Keys [lo, hi) that any query row in [q_first, q_last] may see (before padding masks).
__host__ __device__ inline void key_range(const AttentionCudaParams& p, int64_t q_first,
                                          int64_t q_last, int64_t* lo, int64_t* hi) {
  const int64_t offset = p.seq_k - p.seq_q;
  int64_t h = p.seq_k, l = 0;
  if (p.causal) h = h < q_last + offset + 1 ? h : q_last + offset + 1;
  if (p.window_right >= 0) {
    const int64_t e = q_last + offset + p.window_right + 1;
    h = h < e ? h : e;
  }
  if (p.window_left >= 0) {
    const int64_t s = q_first + offset - p.window_left;
    l = l > s ? l : s;
  }
  *lo = l;
  *hi = h;
}

// Queries [lo, hi) that may see any key in [k_first, k_last].
__host__ __device__ inline void query_range(const AttentionCudaParams& p, int64_t k_first,
                                            int64_t k_last, int64_t* lo, int64_t* hi) {
  const int64_t offset = p.seq_k - p.seq_q;
  int64_t l = 0, h = p.seq_q;
  if (p.causal) {  // j <= i + offset  <=>  i >= j - offset
    const int64_t s = k_first - offset;
    l = l > s ? l : s;
  }
  if (p.window_right >= 0) {  // j <= i + offset + wr  <=>  i >= j - offset - wr
    const int64_t s = k_first - offset - p.window_right;
    l = l > s ? l : s;
  }
  if (p.window_left >= 0) {  // j >= i + offset - wl  <=>  i <= j - offset + wl
    const int64_t e = k_last - offset + p.window_left + 1;
    h = h < e ? h : e;
  }
  *lo = l;
  *hi = h;
}

// Tile shapes by dtype size and padded head dim, sized to fit sm_80's 163 KB of shared memory.
template <int ES, int DT>
struct ForwardTiles {
  static constexpr int BM = (ES == 4 && DT == 256) ? 32 : 64;
  static constexpr int BN = DT <= 64 ? 64 : (ES == 2 && DT == 128 ? 64 : 32);
};
template <int ES, int DT>
struct BackwardTiles {
  static constexpr int BM = ES == 2 ? (DT <= 64 ? 64 : 32) : (DT <= 128 ? 32 : 16);
  static constexpr int BN = ES == 2 ? (DT <= 128 ? 64 : 32) : (DT <= 64 ? 64 : (DT == 128 ? 32 : 16));
};

constexpr int kMaxSmemBytes = 160 * 1024;

// Refuses shapes the kernels were not built for (the glue checks them first; a direct caller
// gets cudaErrorInvalidValue rather than a bad launch) and calls launch(tile) with the head-dim
// tile, a std::integral_constant<int, 32, 64, 128 or 256>.
template <typename Launch>
cudaError_t launch_for_head_dim(const AttentionCudaParams& p, const Launch& launch) {
  if (p.heads_kv <= 0 || p.heads_q % p.heads_kv != 0 || p.batch > 65535 || p.heads_q > 65535 ||
      p.seq_q >= (int64_t{1} << 30) || p.seq_k >= (int64_t{1} << 30) ||
      p.head_dim < kAttentionCudaMinHeadDim) {
    return cudaErrorInvalidValue;
  }
  if (p.head_dim <= 32) return launch(std::integral_constant<int, 32>{});
  if (p.head_dim <= 64) return launch(std::integral_constant<int, 64>{});
  if (p.head_dim <= 128) return launch(std::integral_constant<int, 128>{});
  if (p.head_dim <= 256) return launch(std::integral_constant<int, 256>{});
  return cudaErrorInvalidValue;
}

inline cudaError_t prepare_smem(const void* kernel, int bytes) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  int optin = 0;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  if (bytes > optin) return cudaErrorInvalidConfiguration;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

}  // namespace attn_cuda
}  // namespace llmkernels
