// Torch glue for the rotary CUDA kernel: checks, device guard, current stream, dtype dispatch.
// Built only with -DLLMK_WITH_CUDA (setup.py on a CUDA torch); the kernel is rotary_kernels.cu.
#ifdef LLMK_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "../common/overlap_checks.h"
#include "../common/position_ids.h"
#include "rotary.h"
#include "rotary_cuda_launch.h"

namespace llmkernels {
namespace {

void check_activation(const at::Tensor& t, const char* name, const at::Tensor& q) {
  LLMK_CHECK_DIM(t, name, 4);
  LLMK_CHECK_DEVICE(t, name, q.device());
  LLMK_CHECK_DTYPE(t, name, q.scalar_type());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name);
}

RotaryCudaOperand make_operand(const at::Tensor& in, const at::Tensor& out) {
  RotaryCudaOperand op;
  op.in = in.data_ptr();
  op.out = out.data_ptr();
  op.heads = in.size(1);
  op.in_stride_b = in.stride(0);
  op.in_stride_h = in.stride(1);
  op.in_stride_s = in.stride(2);
  op.out_stride_b = out.stride(0);
  op.out_stride_h = out.stride(1);
  op.out_stride_s = out.stride(2);
  // In place the pass-through columns already hold their values.
  op.copy_passthrough = !(in.data_ptr() == out.data_ptr() && in.strides() == out.strides());
  return op;
}

}  // namespace

void rotary_cuda(const at::Tensor& q, at::Tensor& q_out, const std::optional<at::Tensor>& k,
                 const std::optional<at::Tensor>& k_out, const at::Tensor& cos,
                 const at::Tensor& sin, const std::optional<at::Tensor>& position_ids,
                 bool interleaved, bool conjugate) {
  LLMK_CHECK_DEVICE_TYPE(q, "q", at::kCUDA);
  LLMK_CHECK_FLOATING(q, "q");
  check_activation(q, "q", q);
  check_activation(q_out, "q_out", q);
  LLMK_CHECK_SHAPE(q_out, "q_out", q.sizes());

  const int64_t batch = q.size(0), seq = q.size(2), head_dim = q.size(3);

  LLMK_CHECK_ARG(k.has_value() == k_out.has_value(), k.has_value() ? "k_out" : "k",
                 "k and k_out must be given together");
  const bool has_k = k.has_value();
  if (has_k) {
    check_activation(*k, "k", q);
    check_activation(*k_out, "k_out", q);
    LLMK_CHECK_ARG(k->size(0) == batch && k->size(2) == seq && k->size(3) == head_dim, "k",
                   "expected shape (", batch, ", heads_k, ", seq, ", ", head_dim,
                   ") to match q, got ", k->sizes());
    LLMK_CHECK_SHAPE(*k_out, "k_out", k->sizes());
  }

  LLMK_CHECK_DIM(cos, "cos", 2);
  LLMK_CHECK_DTYPE(cos, "cos", at::kFloat);
  LLMK_CHECK_DEVICE(cos, "cos", q.device());
  LLMK_CHECK_CONTIGUOUS(cos, "cos");
  LLMK_CHECK_SHAPE(sin, "sin", cos.sizes());
  LLMK_CHECK_DTYPE(sin, "sin", at::kFloat);
  LLMK_CHECK_DEVICE(sin, "sin", q.device());
  LLMK_CHECK_CONTIGUOUS(sin, "sin");
  const int64_t rotary_dim = 2 * cos.size(1);
  LLMK_CHECK_ARG(rotary_dim <= head_dim, "cos", "rotary_dim = 2 * cos.size(1) = ", rotary_dim,
                 " exceeds head_dim = ", head_dim, " (cos shape ", cos.sizes(), ")");
  LLMK_CHECK_ARG(cos.size(0) > 0 || q.numel() == 0, "cos",
                 "expected at least one position, got shape ", cos.sizes());

  // No range check here: the values live on the device.
  const PositionIds pos =
      check_position_ids(position_ids, batch, seq, -1, "cos/sin", q.device());
  if (!position_ids.has_value()) {
    LLMK_CHECK_ARG(seq <= cos.size(0), "cos", "expected at least seq = ", seq,
                   " positions, got shape ", cos.sizes());
  }

  check_cuda_alias(q_out, "q_out", q, "q");
  if (has_k) {
    check_cuda_alias(*k_out, "k_out", *k, "k");
    at::assert_no_overlap(q_out, *k_out);
    at::assert_no_overlap(q_out, *k);
    at::assert_no_overlap(*k_out, q);
  }

  RotaryCudaParams p;
  p.q = make_operand(q, q_out);
  if (has_k) p.k = make_operand(*k, *k_out);
  p.batch = batch;
  p.seq = seq;
  p.head_dim = head_dim;
  p.rotary_dim = rotary_dim;
  p.cos = cos.data_ptr<float>();
  p.sin = sin.data_ptr<float>();
  p.position_ids = pos.data;
  p.position_batch_stride = pos.batch_stride;
  p.interleaved = interleaved;
  p.conjugate = conjugate;

  const c10::cuda::CUDAGuard guard(q.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q.device().index()).stream();
  const cudaError_t err = launch_for_dtype(q.scalar_type(), "rotary_cuda", [&](auto t) {
    return launch_rotary<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "rotary");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
