// Flash-attention backward, CUDA (semantics: attention.h). No torch headers.
//
// Three deterministic kernels, no atomics:
//   1. delta: Delta_i = sum_d dout_i . out_i (float32 workspace, one warp per row);
//   2. dK/dV: one block per (key block, kv head, batch); it loops over the group's query heads,
//      then over the query blocks that can see its keys, recomputing S and P = exp(s - lse):
//      dV += P^T.dO, dS = P * (dO.V^T - Delta) * softcap', dK += dS^T.Q; the sum over the GQA group
//      happens in one float32 accumulator, in a fixed order;
//   3. dQ: one block per (query block, query head, batch) over its visible key blocks:
//      dQ += dS.K.
// dq, dk, dv are contiguous (B, H, S, D); scale is applied once, at the store.
#include "attention_cuda_layouts.cuh"

namespace llmkernels {
namespace attn_cuda {
namespace {

// Typed views of BackwardLayout's regions of the dynamic shared memory.
template <typename T, int DT>
struct BackwardSmem {
  using L = BackwardLayout<T, DT>;
  T *q, *dout, *k, *v;
  float *s, *dp;  // S and dP
  T *p, *ds;      // P and dS
  float *lse, *delta, *acc;
  __device__ __forceinline__ explicit BackwardSmem(unsigned char* smem)
      : q(reinterpret_cast<T*>(smem + L::kQ)),
        dout(reinterpret_cast<T*>(smem + L::kDO)),
        k(reinterpret_cast<T*>(smem + L::kK)),
        v(reinterpret_cast<T*>(smem + L::kV)),
        s(reinterpret_cast<float*>(smem + L::kS)),
        dp(reinterpret_cast<float*>(smem + L::kDP)),
        p(reinterpret_cast<T*>(smem + L::kP)),
        ds(reinterpret_cast<T*>(smem + L::kDS)),
        lse(reinterpret_cast<float*>(smem + L::kLse)),
        delta(reinterpret_cast<float*>(smem + L::kDelta)),
        acc(reinterpret_cast<float*>(smem + L::kAcc)) {}
};

template <typename T>
__global__ void __launch_bounds__(kThreads) attention_delta_kernel(const AttentionCudaParams p) {
  const int64_t rows = p.batch * p.heads_q * p.seq_q;
  const int D = static_cast<int>(p.head_dim);
  const int lane = threadIdx.x % 32;
  for (int64_t row = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const int64_t i = row % p.seq_q;
    const int64_t bh = row / p.seq_q;
    const int64_t h = bh % p.heads_q, b = bh / p.heads_q;
    const T* o = static_cast<const T*>(p.out.ptr) + b * p.out.stride_b + h * p.out.stride_h +
                 i * p.out.stride_s;
    const T* dout = static_cast<const T*>(p.dout.ptr) + b * p.dout.stride_b +
                    h * p.dout.stride_h + i * p.dout.stride_s;
    float acc = 0.0f;
    for (int d = lane; d < D; d += 32) acc = fmaf(to_float(dout[d]), to_float(o[d]), acc);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) p.delta[row] = acc;
  }
}

// Loads the Q and dO tiles of query block m0 of head h, plus its lse and Delta rows (rows past
// Sq get lse = -inf: P = 0 there).
template <typename T, int DT, int BM>
__device__ __forceinline__ void load_query_side(const AttentionCudaParams& p, int64_t b,
                                                int64_t h, int64_t m0, T* q_s, T* do_s,
                                                float* lse_s, float* delta_s) {
  const int D = static_cast<int>(p.head_dim);
  load_tile<T, BM, DT>(q_s, Ld<DT>::tile, head_of<T>(p.q, b, h), p.q.stride_s, m0, p.seq_q, D);
  load_tile<T, BM, DT>(do_s, Ld<DT>::tile, head_of<T>(p.dout, b, h), p.dout.stride_s, m0, p.seq_q,
                       D);
  const int64_t row_base = (b * p.heads_q + h) * p.seq_q;
  for (int r = threadIdx.x; r < BM; r += kThreads) {
    const int64_t i = m0 + r;
    lse_s[r] = i < p.seq_q ? p.lse[row_base + i] : neg_inf();
    delta_s[r] = i < p.seq_q ? p.delta[row_base + i] : 0.0f;
  }
}

// With S = Q.K^T and dP = dO.V^T in shared memory: P = exp(s - lse) and
// dS = P * (dP - Delta) * softcap' for the (BM, BN) tile at (m0, n0), both rounded to T.
template <typename T, int BM, int BN>
__device__ __forceinline__ void probs_and_dscores(const ScoreRule& rule, int64_t m0, int64_t n0,
                                                  const float* s_s, const float* dp_s,
                                                  const float* lse_s, const float* delta_s,
                                                  T* p_s, T* ds_s) {
  constexpr int LDS = LdScore<BN>::f32, LDP = LdScore<BN>::t;
  for (int idx = threadIdx.x; idx < BM * BN; idx += kThreads) {
    const int r = idx / BN, c = idx % BN;
    float cap_grad;
    const float s = rule.score(s_s[r * LDS + c], m0 + r, n0 + c, &cap_grad);
    const float lse = lse_s[r];
    float pv = 0.0f, ds = 0.0f;
    if (s != neg_inf() && lse != neg_inf()) {
      pv = expf(s - lse);
      ds = pv * (dp_s[r * LDS + c] - delta_s[r]) * cap_grad;
    }
    p_s[r * LDP + c] = from_float<T>(pv);
    ds_s[r * LDP + c] = from_float<T>(ds);
  }
}

// S = Q.K^T and dP = dO.V^T of the staged tiles, then P and dS (probs_and_dscores); ends synced.
template <typename T, int DT>
__device__ __forceinline__ void tile_grads(const BackwardSmem<T, DT>& sm, const ScoreRule& rule,
                                           int64_t m0, int64_t n0) {
  using L = BackwardLayout<T, DT>;
  constexpr int LDT = Ld<DT>::tile, LDS = LdScore<L::BN>::f32;
  block_gemm<T, L::BM, L::BN, DT, false, true, false>(sm.q, LDT, sm.k, LDT, sm.s, LDS);
  block_gemm<T, L::BM, L::BN, DT, false, true, false>(sm.dout, LDT, sm.v, LDT, sm.dp, LDS);
  __syncthreads();
  probs_and_dscores<T, L::BM, L::BN>(rule, m0, n0, sm.s, sm.dp, sm.lse, sm.delta, sm.p, sm.ds);
  __syncthreads();
}

template <typename T, int DT>
__global__ void __launch_bounds__(kThreads) attention_dkdv_kernel(const AttentionCudaParams p) {
  using L = BackwardLayout<T, DT>;
  constexpr int BM = L::BM, BN = L::BN, LDT = L::LDT, LDO = L::LDO, LDP = L::LDP;
  extern __shared__ __align__(128) unsigned char smem[];
  const BackwardSmem<T, DT> sm(smem);
  float* dk_s = sm.acc;
  float* dv_s = reinterpret_cast<float*>(smem + L::kAcc + L::kAccK);

  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t hk = blockIdx.y, b = blockIdx.z;
  const int64_t group = p.heads_q / p.heads_kv;
  const int D = static_cast<int>(p.head_dim);

  load_kv_tiles<T, BN, DT>(p, head_of<T>(p.k, b, hk), head_of<T>(p.v, b, hk), n0, sm.k, sm.v);
  zero_f32<BN, DT>(dk_s, LDO);
  zero_f32<BN, DT>(dv_s, LDO);

  int64_t lo, hi;
  query_range(p, n0, min64(n0 + BN, p.seq_k) - 1, &lo, &hi);
  for (int64_t g = 0; g < group; ++g) {
    const int64_t h = hk * group + g;
    const ScoreRule rule = make_rule(p, b, h);
    for (int64_t m0 = max64(lo, 0) / BM * BM; m0 < hi; m0 += BM) {
      __syncthreads();  // the previous products are done with q_s, do_s, p_s, ds_s
      load_query_side<T, DT, BM>(p, b, h, m0, sm.q, sm.dout, sm.lse, sm.delta);
      __syncthreads();
      tile_grads(sm, rule, m0, n0);
      block_gemm<T, BN, DT, BM, true, false, true>(sm.p, LDP, sm.dout, LDT, dv_s, LDO);
      block_gemm<T, BN, DT, BM, true, false, true>(sm.ds, LDP, sm.q, LDT, dk_s, LDO);
    }
  }
  __syncthreads();

  const int64_t head_rows = (b * p.heads_kv + hk) * p.seq_k;
  T* dk = static_cast<T*>(p.dk) + head_rows * D;
  T* dv = static_cast<T*>(p.dv) + head_rows * D;
  for (int idx = threadIdx.x; idx < BN * DT; idx += kThreads) {
    const int r = idx / DT, d = idx % DT;
    const int64_t j = n0 + r;
    if (j >= p.seq_k || d >= D) continue;
    dk[j * D + d] = from_float<T>(dk_s[r * LDO + d] * p.scale);
    dv[j * D + d] = from_float<T>(dv_s[r * LDO + d]);
  }
}

template <typename T, int DT>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(const AttentionCudaParams p) {
  using L = BackwardLayout<T, DT>;
  constexpr int BM = L::BM, BN = L::BN, LDT = L::LDT, LDO = L::LDO, LDP = L::LDP;
  extern __shared__ __align__(128) unsigned char smem[];
  const BackwardSmem<T, DT> sm(smem);
  float* dq_s = sm.acc;

  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.heads_q / p.heads_kv);
  const int D = static_cast<int>(p.head_dim);
  const T* k_head = head_of<T>(p.k, b, hk);
  const T* v_head = head_of<T>(p.v, b, hk);
  const ScoreRule rule = make_rule(p, b, h);

  load_query_side<T, DT, BM>(p, b, h, m0, sm.q, sm.dout, sm.lse, sm.delta);
  zero_f32<BM, DT>(dq_s, LDO);

  int64_t lo, hi;
  key_range(p, m0, min64(m0 + BM, p.seq_q) - 1, &lo, &hi);
  for (int64_t n0 = max64(lo, 0) / BN * BN; n0 < hi; n0 += BN) {
    __syncthreads();  // the previous dS.K is done with k_s, ds_s
    load_kv_tiles<T, BN, DT>(p, k_head, v_head, n0, sm.k, sm.v);
    __syncthreads();
    tile_grads(sm, rule, m0, n0);
    block_gemm<T, BM, DT, BN, false, false, true>(sm.ds, LDP, sm.k, LDT, dq_s, LDO);
  }
  __syncthreads();

  T* dq = static_cast<T*>(p.dq) + (b * p.heads_q + h) * p.seq_q * D;
  for (int idx = threadIdx.x; idx < BM * DT; idx += kThreads) {
    const int r = idx / DT, d = idx % DT;
    const int64_t i = m0 + r;
    if (i >= p.seq_q || d >= D) continue;
    dq[i * D + d] = from_float<T>(dq_s[r * LDO + d] * p.scale);
  }
}

template <typename T, int DT>
cudaError_t launch_dt(const AttentionCudaParams& p, cudaStream_t stream) {
  using L = BackwardLayout<T, DT>;
  const auto dkdv = attention_dkdv_kernel<T, DT>;
  const auto dq = attention_dq_kernel<T, DT>;
  cudaError_t err = prepare_smem(reinterpret_cast<const void*>(dkdv), L::bytes_dkdv);
  if (err != cudaSuccess) return err;
  err = prepare_smem(reinterpret_cast<const void*>(dq), L::bytes_dq);
  if (err != cudaSuccess) return err;

  const int64_t rows = p.batch * p.heads_q * p.seq_q;
  const int64_t delta_blocks = min64((rows + kWarps - 1) / kWarps, int64_t{1} << 20);
  attention_delta_kernel<T><<<static_cast<unsigned int>(delta_blocks), kThreads, 0, stream>>>(p);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  const dim3 grid_kv(static_cast<unsigned int>((p.seq_k + L::BN - 1) / L::BN),
                     static_cast<unsigned int>(p.heads_kv), static_cast<unsigned int>(p.batch));
  dkdv<<<grid_kv, kThreads, L::bytes_dkdv, stream>>>(p);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  const dim3 grid_q(static_cast<unsigned int>((p.seq_q + L::BM - 1) / L::BM),
                    static_cast<unsigned int>(p.heads_q), static_cast<unsigned int>(p.batch));
  dq<<<grid_q, kThreads, L::bytes_dq, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace
}  // namespace attn_cuda

template <typename T>
cudaError_t launch_attention_backward(const AttentionCudaParams& p, cudaStream_t stream) {
  using namespace attn_cuda;
  if (p.batch == 0 || p.heads_q == 0 || p.seq_q == 0 || p.seq_k == 0) return cudaSuccess;
  if (p.delta == nullptr) return cudaErrorInvalidValue;
  return launch_for_head_dim(
      p, [&](auto dt) { return launch_dt<T, decltype(dt)::value>(p, stream); });
}

template cudaError_t launch_attention_backward<float>(const AttentionCudaParams&, cudaStream_t);
template cudaError_t launch_attention_backward<__half>(const AttentionCudaParams&, cudaStream_t);
template cudaError_t launch_attention_backward<__nv_bfloat16>(const AttentionCudaParams&,
                                                              cudaStream_t);

}  // namespace llmkernels
