// Torch glue for the flash-attention CUDA kernels: checks, device guard, current stream, dtype
// dispatch, the Delta workspace, and the Python bindings. Built only with -DLLMK_WITH_CUDA
// (setup.py on a CUDA torch); the kernels are attention_cuda_forward.cu / _backward.cu.
#ifdef LLMK_WITH_CUDA

#include <torch/extension.h>

#include <ATen/MemoryOverlap.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>
#include <vector>

#include "../common/checks.h"
#include "attention_cuda.h"
#include "attention_cuda_launch.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

void check_disjoint(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                    const char* b_name) {
  const auto status = at::get_overlap_status(a, b);
  LLMK_CHECK_ARG(status != at::MemOverlapStatus::Partial && status != at::MemOverlapStatus::Full,
                 a_name, "overlaps ", b_name, "; expected separate memory");
}

void check_bhsd(const at::Tensor& t, const char* name, const at::Tensor& q) {
  LLMK_CHECK_DEVICE(t, name, q.device());
  LLMK_CHECK_DIM(t, name, 4);
  LLMK_CHECK_DTYPE(t, name, q.scalar_type());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name);
}

void check_output(const at::Tensor& t, const char* name) {
  LLMK_CHECK_ARG(at::has_internal_overlap(t) != at::MemOverlap::Yes, name,
                 "expected an output without internal overlap, got strides ", t.strides());
}

AttentionCudaOperand operand(const at::Tensor& t) {
  AttentionCudaOperand o;
  o.ptr = t.data_ptr();
  o.stride_b = t.stride(0);
  o.stride_h = t.stride(1);
  o.stride_s = t.stride(2);
  return o;
}

AttentionCudaParams check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 double scale, bool causal, int64_t window_left,
                                 int64_t window_right, double softcap,
                                 const std::optional<at::Tensor>& alibi_slopes,
                                 const std::optional<at::Tensor>& key_padding_mask) {
  LLMK_CHECK_DEVICE_TYPE(q, "q", at::kCUDA);
  LLMK_CHECK_DIM(q, "q", 4);
  LLMK_CHECK_FLOATING(q, "q");
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(q, "q");
  check_bhsd(k, "k", q);
  check_bhsd(v, "v", q);
  const int64_t B = q.size(0), Hq = q.size(1), Sq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Sk = k.size(2);
  LLMK_CHECK_ARG(k.size(0) == B && k.size(3) == D, "k", "expected shape (", B,
                 ", heads_kv, seq_k, ", D, ") to match q ", q.sizes(), ", got ", k.sizes());
  LLMK_CHECK_ARG(Hkv > 0 ? Hq % Hkv == 0 : Hq == 0, "k", "expected a head count dividing q's ",
                 Hq, ", got shape ", k.sizes());
  LLMK_CHECK_SHAPE(v, "v", k.sizes());
  LLMK_CHECK_ARG(D >= kAttentionCudaMinHeadDim && D <= kAttentionCudaMaxHeadDim, "q",
                 "the CUDA attention kernels take head_dim in [", kAttentionCudaMinHeadDim, ", ",
                 kAttentionCudaMaxHeadDim, "], got shape ", q.sizes());
  constexpr int64_t kMaxSeq = int64_t{1} << 30;
  LLMK_CHECK_ARG(Sq < kMaxSeq && Sk < kMaxSeq, "q", "sequence lengths must be below 2^30, got ",
                 Sq, " and ", Sk);
  LLMK_CHECK_ARG(B <= 65535 && Hq <= 65535, "q",
                 "the CUDA attention kernels take batch and heads up to 65535, got shape ",
                 q.sizes());

  AttentionCudaParams p;
  p.q = operand(q);
  p.k = operand(k);
  p.v = operand(v);
  p.batch = B;
  p.heads_q = Hq;
  p.heads_kv = Hkv;
  p.seq_q = Sq;
  p.seq_k = Sk;
  p.head_dim = D;
  p.scale = static_cast<float>(scale);
  p.causal = causal;
  p.window_left = window_left < 0 ? -1 : window_left;
  p.window_right = window_right < 0 ? -1 : window_right;
  p.softcap = softcap > 0.0 ? static_cast<float>(softcap) : 0.0f;
  if (alibi_slopes.has_value()) {
    const at::Tensor& s = *alibi_slopes;
    LLMK_CHECK_DEVICE(s, "alibi_slopes", q.device());
    LLMK_CHECK_DTYPE(s, "alibi_slopes", at::kFloat);
    LLMK_CHECK_SHAPE(s, "alibi_slopes", (std::vector<int64_t>{B, Hq}));
    LLMK_CHECK_CONTIGUOUS(s, "alibi_slopes");
    p.alibi_slopes = s.data_ptr<float>();
  }
  if (key_padding_mask.has_value()) {
    const at::Tensor& m = *key_padding_mask;
    LLMK_CHECK_DEVICE(m, "key_padding_mask", q.device());
    LLMK_CHECK_DTYPE(m, "key_padding_mask", at::kBool);
    LLMK_CHECK_SHAPE(m, "key_padding_mask", (std::vector<int64_t>{B, Sk}));
    LLMK_CHECK_CONTIGUOUS(m, "key_padding_mask");
    p.key_padding_mask = reinterpret_cast<const uint8_t*>(m.data_ptr<bool>());
  }
  return p;
}

void check_lse(const at::Tensor& lse, const AttentionCudaParams& p, const at::Device& dev) {
  LLMK_CHECK_DEVICE(lse, "lse", dev);
  LLMK_CHECK_DTYPE(lse, "lse", at::kFloat);
  LLMK_CHECK_SHAPE(lse, "lse", (std::vector<int64_t>{p.batch, p.heads_q, p.seq_q}));
  LLMK_CHECK_CONTIGUOUS(lse, "lse");
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err != cudaErrorInvalidConfiguration, "llmkernels: ", what,
              ": this GPU has too little shared memory per block for the CUDA attention kernels "
              "(they need up to 160 KB, as on sm_80 / sm_90)");
  TORCH_CHECK(err == cudaSuccess, "llmkernels: ", what, " CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

}  // namespace

void attention_forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            at::Tensor& out, at::Tensor& lse, double scale, bool causal,
                            int64_t window_left, int64_t window_right, double softcap,
                            const std::optional<at::Tensor>& alibi_slopes,
                            const std::optional<at::Tensor>& key_padding_mask) {
  AttentionCudaParams p = check_inputs(q, k, v, scale, causal, window_left, window_right, softcap,
                                       alibi_slopes, key_padding_mask);
  check_bhsd(out, "out", q);
  LLMK_CHECK_SHAPE(out, "out", q.sizes());
  check_output(out, "out");
  check_lse(lse, p, q.device());
  check_disjoint(out, "out", q, "q");
  check_disjoint(out, "out", k, "k");
  check_disjoint(out, "out", v, "v");
  check_disjoint(lse, "lse", out, "out");
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
  cudaError_t err = cudaSuccess;
  switch (q.scalar_type()) {
    case at::kFloat:
      err = launch_attention_forward<float>(p, stream);
      break;
    case at::kHalf:
      err = launch_attention_forward<__half>(p, stream);
      break;
    case at::kBFloat16:
      err = launch_attention_forward<__nv_bfloat16>(p, stream);
      break;
    default:
      TORCH_CHECK(false, "llmkernels: attention_forward_cuda: unhandled dtype ", q.scalar_type());
  }
  check_launch(err, "attention forward");
}

void attention_backward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& out, const at::Tensor& dout, const at::Tensor& lse,
                             at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale,
                             bool causal, int64_t window_left, int64_t window_right,
                             double softcap, const std::optional<at::Tensor>& alibi_slopes,
                             const std::optional<at::Tensor>& key_padding_mask) {
  AttentionCudaParams p = check_inputs(q, k, v, scale, causal, window_left, window_right, softcap,
                                       alibi_slopes, key_padding_mask);
  check_bhsd(out, "out", q);
  LLMK_CHECK_SHAPE(out, "out", q.sizes());
  check_bhsd(dout, "dout", q);
  LLMK_CHECK_SHAPE(dout, "dout", q.sizes());
  check_lse(lse, p, q.device());
  const std::pair<at::Tensor*, const char*> grads[] = {{&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}};
  const std::pair<const at::Tensor*, const char*> inputs[] = {
      {&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "dout"}, {&lse, "lse"}};
  for (const auto& gr : grads) {
    LLMK_CHECK_DEVICE(*gr.first, gr.second, q.device());
    LLMK_CHECK_DTYPE(*gr.first, gr.second, q.scalar_type());
    LLMK_CHECK_CONTIGUOUS(*gr.first, gr.second);
    for (const auto& in : inputs) check_disjoint(*gr.first, gr.second, *in.first, in.second);
  }
  LLMK_CHECK_SHAPE(dq, "dq", q.sizes());
  LLMK_CHECK_SHAPE(dk, "dk", k.sizes());
  LLMK_CHECK_SHAPE(dv, "dv", k.sizes());
  check_disjoint(dq, "dq", dk, "dk");
  check_disjoint(dq, "dq", dv, "dv");
  check_disjoint(dk, "dk", dv, "dv");

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
  cudaError_t err = cudaSuccess;
  switch (q.scalar_type()) {
    case at::kFloat:
      err = launch_attention_backward<float>(p, stream);
      break;
    case at::kHalf:
      err = launch_attention_backward<__half>(p, stream);
      break;
    case at::kBFloat16:
      err = launch_attention_backward<__nv_bfloat16>(p, stream);
      break;
    default:
      TORCH_CHECK(false, "llmkernels: attention_backward_cuda: unhandled dtype ", q.scalar_type());
  }
  check_launch(err, "attention backward");
}

void register_attention_cuda(py::module_& m) {
  m.def("attention_forward_cuda", &attention_forward_cuda, py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("scale"), py::arg("causal"),
        py::arg("window_left"), py::arg("window_right"), py::arg("softcap"),
        py::arg("alibi_slopes"), py::arg("key_padding_mask"),
        py::call_guard<py::gil_scoped_release>(),
        "Flash attention forward on CUDA tensors (B, H, S, D): writes out and lse "
        "(see attention.h).");
  m.def("attention_backward_cuda", &attention_backward_cuda, py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("out"), py::arg("dout"), py::arg("lse"), py::arg("dq"),
        py::arg("dk"), py::arg("dv"), py::arg("scale"), py::arg("causal"),
        py::arg("window_left"), py::arg("window_right"), py::arg("softcap"),
        py::arg("alibi_slopes"), py::arg("key_padding_mask"),
        py::call_guard<py::gil_scoped_release>(),
        "Flash attention backward on CUDA tensors: writes dq, dk, dv (contiguous; dk, dv summed "
        "over each GQA group), deterministically (see attention.h).");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
