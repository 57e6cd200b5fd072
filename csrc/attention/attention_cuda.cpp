// Torch glue for the flash-attention CUDA kernels: device guard, current stream, dtype dispatch
// and the Delta workspace (argument checks: attention_arguments.h). Built only with
// -DLLMK_WITH_CUDA (setup.py on a CUDA torch); the kernels are attention_cuda_forward.cu /
// _backward.cu.
#ifdef LLMK_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "attention.h"
#include "attention_arguments.h"
#include "attention_cuda_launch.h"

namespace llmkernels {
namespace {

AttentionCudaOperand operand(const at::Tensor& t) {
  AttentionCudaOperand o;
  o.ptr = t.data_ptr();
  o.stride_b = t.stride(0);
  o.stride_h = t.stride(1);
  o.stride_s = t.stride(2);
  return o;
}

// The shared checks plus the limits of the CUDA kernels (tile widths, grid dimensions).
cpu::AttentionParams check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  double scale, bool causal, int64_t window_left,
                                  int64_t window_right, double softcap,
                                  const std::optional<at::Tensor>& alibi_slopes,
                                  const std::optional<at::Tensor>& key_padding_mask) {
  const cpu::AttentionParams s =
      check_attention_inputs(q, k, v, scale, causal, window_left, window_right, softcap,
                             alibi_slopes, key_padding_mask, at::kCUDA);
  LLMK_CHECK_ARG(s.head_dim >= kAttentionCudaMinHeadDim && s.head_dim <= kAttentionCudaMaxHeadDim,
                 "q", "the CUDA attention kernels take head_dim in [", kAttentionCudaMinHeadDim,
                 ", ", kAttentionCudaMaxHeadDim, "], got shape ", q.sizes());
  LLMK_CHECK_ARG(s.batch <= 65535 && s.heads_q <= 65535, "q",
                 "the CUDA attention kernels take batch and heads up to 65535, got shape ",
                 q.sizes());
  return s;
}

AttentionCudaParams cuda_params(const cpu::AttentionParams& s, const at::Tensor& q,
                                const at::Tensor& k, const at::Tensor& v) {
  AttentionCudaParams p;
  p.q = operand(q);
  p.k = operand(k);
  p.v = operand(v);
  p.batch = s.batch;
  p.heads_q = s.heads_q;
  p.heads_kv = s.heads_kv;
  p.seq_q = s.seq_q;
  p.seq_k = s.seq_k;
  p.head_dim = s.head_dim;
  p.scale = s.scale;
  p.causal = s.causal;
  p.window_left = s.window_left;
  p.window_right = s.window_right;
  p.softcap = s.softcap;
  p.alibi_slopes = s.alibi;
  p.key_padding_mask = s.key_padding_mask;
  return p;
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err != cudaErrorInvalidConfiguration, "llmkernels: ", what,
              ": this GPU has too little shared memory per block for the CUDA attention kernels "
              "(they need up to 160 KB, as on sm_80 / sm_90)");
  check_cuda_launch(err, what);
}

}  // namespace

void attention_forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            at::Tensor& out, at::Tensor& lse, double scale, bool causal,
                            int64_t window_left, int64_t window_right, double softcap,
                            const std::optional<at::Tensor>& alibi_slopes,
                            const std::optional<at::Tensor>& key_padding_mask) {
  const cpu::AttentionParams s = check_inputs(q, k, v, scale, causal, window_left, window_right,
                                              softcap, alibi_slopes, key_padding_mask);
  check_attention_forward_outputs(s, q, k, v, out, lse);
  AttentionCudaParams p = cuda_params(s, q, k, v);
  if (q.numel() == 0) return;

  const c10::cuda::CUDAGuard guard(q.device());
  if (p.seq_k == 0) {  // no key at all: every row is fully masked
    out.zero_();
    lse.fill_(-std::numeric_limits<float>::infinity());
    return;
  }
  p.out = operand(out);
  p.out_mut = out.data_ptr();
  p.lse = lse.data_ptr<float>();

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q.device().index()).stream();
  const cudaError_t err = launch_for_dtype(q.scalar_type(), "attention_forward_cuda", [&](auto t) {
    return launch_attention_forward<typename decltype(t)::type>(p, stream);
  });
  check_launch(err, "attention forward");
}

void attention_backward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& out, const at::Tensor& dout, const at::Tensor& lse,
                             at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale,
                             bool causal, int64_t window_left, int64_t window_right,
                             double softcap, const std::optional<at::Tensor>& alibi_slopes,
                             const std::optional<at::Tensor>& key_padding_mask) {
  const cpu::AttentionParams s = check_inputs(q, k, v, scale, causal, window_left, window_right,
                                              softcap, alibi_slopes, key_padding_mask);
  check_attention_backward_tensors(s, q, k, v, out, dout, lse, dq, dk, dv);
  AttentionCudaParams p = cuda_params(s, q, k, v);

  const c10::cuda::CUDAGuard guard(q.device());
  if (q.numel() == 0 || p.seq_k == 0) {  // nothing is seen: all gradients are zero
    dq.zero_();
    dk.zero_();
    dv.zero_();
    return;
  }
  p.out = operand(out);
  p.dout = operand(dout);
  p.lse = lse.data_ptr<float>();
  p.dq = dq.data_ptr();
  p.dk = dk.data_ptr();
  p.dv = dv.data_ptr();
  // Delta_i = dout_i . out_i: a stream-ordered float32 workspace from torch's caching allocator.
  at::Tensor delta = at::empty({p.batch, p.heads_q, p.seq_q}, q.options().dtype(at::kFloat));
  p.delta = delta.data_ptr<float>();

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q.device().index()).stream();
  const cudaError_t err = launch_for_dtype(q.scalar_type(), "attention_backward_cuda", [&](auto t) {
    return launch_attention_backward<typename decltype(t)::type>(p, stream);
  });
  check_launch(err, "attention backward");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
