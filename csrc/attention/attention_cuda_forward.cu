// Flash-attention forward, CUDA (semantics: attention.h). No torch headers.
//
// One block per (query block of BM rows, query head, batch); it walks the key blocks that its
// rows can see (causal / window bounds), BN keys at a time: S = Q.K^T (tensor cores for
// fp16/bf16), then per row (one warp) the score rules, an online softmax in float32 that
// rescales the float32 O accumulator, then O += P.V with P rounded to the input dtype.
// Finally out = O / l and lse = m + log(l); a row that saw no key gets zeros and lse = -inf.
#include "attention_cuda_layouts.cuh"

#include <algorithm>

namespace llmkernels {
namespace attn_cuda {
namespace {

template <typename T, int DT>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const AttentionCudaParams p) {
  using L = ForwardLayout<T, DT>;
  constexpr int BM = L::BM, BN = L::BN;
  constexpr int LDT = Ld<DT>::tile, LDO = Ld<DT>::acc;
  constexpr int LDS = LdScore<BN>::f32, LDP = LdScore<BN>::t;
  extern __shared__ __align__(128) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem + L::kQ);
  T* k_s = reinterpret_cast<T*>(smem + L::kK);
  T* v_s = reinterpret_cast<T*>(smem + L::kV);
  float* s_s = reinterpret_cast<float*>(smem + L::kS);
  T* p_s = reinterpret_cast<T*>(smem + L::kP);
  float* o_s = reinterpret_cast<float*>(smem + L::kO);
  float* m_s = reinterpret_cast<float*>(smem + L::kM);
  float* l_s = reinterpret_cast<float*>(smem + L::kL);

  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.heads_q / p.heads_kv);
  const int D = static_cast<int>(p.head_dim);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const T* q_head = head_of<T>(p.q, b, h);
  const T* k_head = head_of<T>(p.k, b, hk);
  const T* v_head = head_of<T>(p.v, b, hk);
  const ScoreRule rule = make_rule(p, b, h);

  load_tile<T, BM, DT>(q_s, LDT, q_head, p.q.stride_s, m0, p.seq_q, D);
  zero_f32<BM, DT>(o_s, LDO);
  for (int r = threadIdx.x; r < BM; r += kThreads) {
    m_s[r] = neg_inf();
    l_s[r] = 0.0f;
  }

  int64_t lo, hi;
  const int64_t q_last = min64(m0 + BM, p.seq_q) - 1;
  key_range(p, m0, q_last, &lo, &hi);
  for (int64_t n0 = max64(lo, 0) / BN * BN; n0 < hi; n0 += BN) {
    __syncthreads();  // the previous block's P.V is done with k_s, v_s, p_s
    load_kv_tiles<T, BN, DT>(p, k_head, v_head, n0, k_s, v_s);
    __syncthreads();
    block_gemm<T, BM, BN, DT, false, true, false>(q_s, LDT, k_s, LDT, s_s, LDS);
    __syncthreads();
    for (int r = warp; r < BM; r += kWarps) {
      const int64_t i = m0 + r;
      float* srow = s_s + r * LDS;
      float mx = neg_inf();
      for (int c = lane; c < BN; c += 32) {
        float cap_grad;
        const float s = rule.score(srow[c], i, n0 + c, &cap_grad);
        srow[c] = s;
        mx = fmaxf(mx, s);
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, mx);
      const float m_use = m_new == neg_inf() ? 0.0f : m_new;  // all masked so far: p = 0
      float sum = 0.0f;
      for (int c = lane; c < BN; c += 32) {
        const float pv = expf(srow[c] - m_use);
        p_s[r * LDP + c] = from_float<T>(pv);
        sum += pv;
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      const float alpha = expf(m_old - m_use);
      for (int d = lane; d < DT; d += 32) o_s[r * LDO + d] *= alpha;
      __syncwarp();
      if (lane == 0) {
        m_s[r] = m_new;
        l_s[r] = l_s[r] * alpha + sum;
      }
    }
    __syncthreads();
    block_gemm<T, BM, DT, BN, false, false, true>(p_s, LDP, v_s, LDT, o_s, LDO);
  }
  __syncthreads();

  T* out_head = static_cast<T*>(p.out_mut) + b * p.out.stride_b + h * p.out.stride_h;
  float* lse_head = p.lse + (b * p.heads_q + h) * p.seq_q;
  for (int r = warp; r < BM; r += kWarps) {
    const int64_t i = m0 + r;
    if (i >= p.seq_q) break;
    const float l = l_s[r];
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;  // NaN l stays NaN
    for (int d = lane; d < D; d += 32) out_head[i * p.out.stride_s + d] = from_float<T>(o_s[r * LDO + d] * inv);
    if (lane == 0) lse_head[i] = l == 0.0f ? neg_inf() : m_s[r] + logf(l);
  }
}

template <typename T, int DT>
cudaError_t launch_dt(const AttentionCudaParams& p, cudaStream_t stream) {
  using L = ForwardLayout<T, DT>;
  const auto kernel = attention_forward_kernel<T, DT>;
  cudaError_t err = prepare_smem(reinterpret_cast<const void*>(kernel), L::bytes);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>((p.seq_q + L::BM - 1) / L::BM),
                  static_cast<unsigned int>(p.heads_q), static_cast<unsigned int>(p.batch));
  kernel<<<grid, kThreads, L::bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace
}  // namespace attn_cuda

template <typename T>
cudaError_t launch_attention_forward(const AttentionCudaParams& p, cudaStream_t stream) {
  using namespace attn_cuda;
  if (p.batch == 0 || p.heads_q == 0 || p.seq_q == 0) return cudaSuccess;
  if (p.seq_k <= 0) return cudaErrorInvalidValue;  // the glue handles Sk == 0 itself
  return launch_for_head_dim(
      p, [&](auto dt) { return launch_dt<T, decltype(dt)::value>(p, stream); });
}

template cudaError_t launch_attention_forward<float>(const AttentionCudaParams&, cudaStream_t);
template cudaError_t launch_attention_forward<__half>(const AttentionCudaParams&, cudaStream_t);
template cudaError_t launch_attention_forward<__nv_bfloat16>(const AttentionCudaParams&,
                                                             cudaStream_t);

}  // namespace llmkernels
