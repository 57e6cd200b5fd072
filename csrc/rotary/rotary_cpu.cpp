// Torch glue for the rotary CPU kernel: checks, dtype mapping, threading and ISA dispatch. The
// arithmetic lives in rotary_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../common/checks.h"
#include "../common/cpu_elem_type.h"
#include "../common/cpu_isa.h"
#include "../common/overlap_checks.h"
#include "../common/position_ids.h"
#include "rotary.h"
#include "rotary_cpu_kernel.h"

namespace llmkernels {
namespace {

cpu::RotaryRowsFn rotary_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::rotary_rows;
    case cpu::Isa::avx512: return &cpu_avx512::rotary_rows;
    case cpu::Isa::avx2: return &cpu_avx2::rotary_rows;
#endif
    default: return &cpu_generic::rotary_rows;
  }
}

// Input/output pair checks shared by q and k (k may have its own head count).
void check_pair(const at::Tensor& in, const char* in_name, const at::Tensor& out,
                const char* out_name, const at::Tensor& q) {
  LLMK_CHECK_DEVICE_TYPE(in, in_name, at::kCPU);
  LLMK_CHECK_DIM(in, in_name, 4);
  LLMK_CHECK_DTYPE(in, in_name, q.scalar_type());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(in, in_name);
  LLMK_CHECK_ARG(in.size(0) == q.size(0) && in.size(2) == q.size(2) && in.size(3) == q.size(3),
                 in_name, "expected shape (", q.size(0), ", heads, ", q.size(2), ", ", q.size(3),
                 ") to match q ", q.sizes(), ", got ", in.sizes());
  LLMK_CHECK_DEVICE_TYPE(out, out_name, at::kCPU);
  LLMK_CHECK_DTYPE(out, out_name, in.scalar_type());
  LLMK_CHECK_SHAPE(out, out_name, in.sizes());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(out, out_name);
  check_output(out, out_name);
  check_in_place_or_disjoint(in, in_name, out, out_name);
}

cpu::RotaryTensor view(const at::Tensor& in, const at::Tensor& out) {
  return cpu::RotaryTensor{in.data_ptr(),   out.data_ptr(),   in.size(1),
                           in.stride(0),    in.stride(1),     in.stride(2),
                           out.stride(0),   out.stride(1),    out.stride(2)};
}

}  // namespace

void rotary_cpu(const at::Tensor& q, at::Tensor& q_out, const std::optional<at::Tensor>& k,
                const std::optional<at::Tensor>& k_out, const at::Tensor& cos,
                const at::Tensor& sin, const std::optional<at::Tensor>& position_ids,
                bool interleaved, bool conjugate) {
  LLMK_CHECK_FLOATING(q, "q");
  check_pair(q, "q", q_out, "q_out", q);
  LLMK_CHECK_ARG(k.has_value() == k_out.has_value(), k.has_value() ? "k_out" : "k",
                 "k and k_out must be given together (got ", k.has_value() ? "k" : "k_out",
                 " only)");
  const bool has_k = k.has_value();
  if (has_k) {
    check_pair(*k, "k", *k_out, "k_out", q);
    check_disjoint(*k_out, "k_out", q_out, "q_out");
    check_disjoint(*k_out, "k_out", q, "q");
    check_disjoint(q_out, "q_out", *k, "k");
  }

  const int64_t batch = q.size(0), seq = q.size(2), head_dim = q.size(3);
  const auto check_table = [](const at::Tensor& t, const char* name) {
    LLMK_CHECK_DEVICE_TYPE(t, name, at::kCPU);
    LLMK_CHECK_DIM(t, name, 2);
    LLMK_CHECK_DTYPE(t, name, at::kFloat);
    LLMK_CHECK_CONTIGUOUS(t, name);
  };
  check_table(cos, "cos");
  check_table(sin, "sin");
  LLMK_CHECK_SHAPE(sin, "sin", cos.sizes());
  const int64_t max_positions = cos.size(0), rotary_dim = 2 * cos.size(1);
  LLMK_CHECK_ARG(rotary_dim <= head_dim, "cos", "expected shape (max_positions, rotary_dim / 2) ",
                 "with rotary_dim <= head_dim = ", head_dim, ", got ", cos.sizes());

  const PositionIds pos =
      check_position_ids(position_ids, batch, seq, max_positions, "cos/sin", at::kCPU);
  if (!position_ids.has_value()) {
    LLMK_CHECK_ARG(seq <= max_positions, "cos", "has ", max_positions,
                   " positions but seq = ", seq, " needs one per sequence index");
  }

  const int64_t rows = batch * seq;
  if (rows == 0 || head_dim == 0) return;

  cpu::RotaryRowsArgs args{};
  args.tensors[0] = view(q, q_out);
  args.num_tensors = 1;
  if (has_k) {
    args.tensors[1] = view(*k, *k_out);
    args.num_tensors = 2;
  }
  args.dtype = cpu::elem_type(q.scalar_type());
  args.cos = cos.data_ptr<float>();
  args.sin = sin.data_ptr<float>();
  args.position_ids = pos.data;
  args.position_stride_b = pos.batch_stride;
  args.seq = seq;
  args.head_dim = head_dim;
  args.rotary_dim = rotary_dim;
  args.interleaved = interleaved;
  args.conjugate = conjugate;
  const bool in_place =
      q_out.data_ptr() == q.data_ptr() || (has_k && k_out->data_ptr() == k->data_ptr());
  const int64_t out_bytes = (q_out.numel() + (has_k ? k_out->numel() : 0)) * q.element_size();
  args.stream_out = !in_place && out_bytes >= cpu::kStreamingMinBytes;

  const cpu::RotaryRowsFn fn = rotary_variant(cpu::selected_isa());
  const int64_t heads = q.size(1) + (has_k ? k->size(1) : 0);
  // ~64K elements per task: enough to amortise scheduling, small enough to balance.
  const int64_t grain =
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, heads * head_dim));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
}

}  // namespace llmkernels
