// Torch glue for the swiglu CPU kernels: checks, dtype mapping, threading and ISA dispatch. The
// arithmetic lives in swiglu_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../common/cpu_elem_type.h"
#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "swiglu.h"
#include "swiglu_arguments.h"
#include "swiglu_cpu_kernel.h"

namespace llmkernels {
namespace {

struct SwigluVariant {
  cpu::SwigluRowsFn forward, backward;
};

SwigluVariant swiglu_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16:
      return {&cpu_avx512bf16::swiglu_forward_rows, &cpu_avx512bf16::swiglu_backward_rows};
    case cpu::Isa::avx512:
      return {&cpu_avx512::swiglu_forward_rows, &cpu_avx512::swiglu_backward_rows};
    case cpu::Isa::avx2: return {&cpu_avx2::swiglu_forward_rows, &cpu_avx2::swiglu_backward_rows};
#endif
    default: return {&cpu_generic::swiglu_forward_rows, &cpu_generic::swiglu_backward_rows};
  }
}

// Runs fn over the rows; ~64K elements per task, so a small call stays on the calling thread.
// Rows are independent: the split never changes a bit of the result.
void run_rows(cpu::SwigluRowsFn fn, const cpu::SwigluRowsArgs& args) {
  const int64_t cols = args.t.cols;
  if (args.t.rows == 0 || cols == 0) return;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / cols);
  at::parallel_for(0, args.t.rows, grain,
                   [&](int64_t begin, int64_t end) { fn(args, begin, end); });
}

}  // namespace

void swiglu_forward_cpu(const at::Tensor& gate, const at::Tensor& up, at::Tensor& out,
                        int64_t activation) {
  cpu::SwigluRowsArgs args;
  args.t = check_swiglu_forward_arguments(gate, up, out, activation, at::kCPU);
  args.dtype = cpu::elem_type(gate.scalar_type());
  args.stream_out = out.numel() * out.element_size() >= cpu::kStreamingMinBytes;
  advise_huge_pages(out.data_ptr(), static_cast<size_t>(out.nbytes()));
  run_rows(swiglu_variant(cpu::selected_isa()).forward, args);
}

void swiglu_backward_cpu(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up,
                         at::Tensor& grad_gate, at::Tensor& grad_up, int64_t activation) {
  cpu::SwigluRowsArgs args;
  args.t = check_swiglu_backward_arguments(grad, gate, up, grad_gate, grad_up, activation, at::kCPU);
  args.dtype = cpu::elem_type(gate.scalar_type());
  args.stream_out = 2 * gate.numel() * gate.element_size() >= cpu::kStreamingMinBytes;
  advise_huge_pages(grad_gate.data_ptr(), static_cast<size_t>(grad_gate.nbytes()));
  advise_huge_pages(grad_up.data_ptr(), static_cast<size_t>(grad_up.nbytes()));
  run_rows(swiglu_variant(cpu::selected_isa()).backward, args);
}

}  // namespace llmkernels
