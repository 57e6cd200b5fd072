// Torch glue for the rms_norm CPU kernel: threading, ISA dispatch and the fixed-order sum of the
// weight-gradient partials (argument checks and parameters: rms_norm_arguments.h). The arithmetic
// lives in rms_norm_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>
#include <cstdint>
#include <memory>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/ones.h>

#include "../common/cpu_elem_type.h"
#include "../common/cpu_isa.h"
#include "rms_norm.h"
#include "rms_norm_arguments.h"
#include "rms_norm_cpu_kernel.h"

namespace llmkernels {
namespace {

cpu::RmsNormForwardFn forward_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::rms_norm_forward_rows;
    case cpu::Isa::avx512: return &cpu_avx512::rms_norm_forward_rows;
    case cpu::Isa::avx2: return &cpu_avx2::rms_norm_forward_rows;
#endif
    default: return &cpu_generic::rms_norm_forward_rows;
  }
}

cpu::RmsNormBackwardFn backward_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::rms_norm_backward_blocks;
    case cpu::Isa::avx512: return &cpu_avx512::rms_norm_backward_blocks;
    case cpu::Isa::avx2: return &cpu_avx2::rms_norm_backward_blocks;
#endif
    default: return &cpu_generic::rms_norm_backward_blocks;
  }
}

// ~64K elements per task: enough to amortise waking a thread, small enough to balance; a small
// call stays on the calling thread.
constexpr int64_t kTaskElements = int64_t{1} << 16;

// Runs fn(begin, end, scratch) over [0, n) in tasks of at least `grain` items, each task with its
// own float32 scratch of `rows_kept` padded rows of `dim` (see rms_norm_cpu_kernel.h).
template <typename Fn>
void parallel_with_scratch(int64_t n, int64_t grain, int64_t dim, int64_t rows_kept,
                           const Fn& fn) {
  const size_t floats = static_cast<size_t>(rows_kept * ((dim + 15) / 16 * 16));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> scratch(new float[floats]());
    fn(begin, end, scratch.get());
  });
}

// The kernels always scale by a weight (a multiply by 1 changes no bit): one loop per dtype
// combination instead of two. `ones` keeps the stand-in alive for the call.
template <typename Params>
void weight_or_ones(Params& p, at::Tensor& ones) {
  if (p.weight != nullptr) return;
  ones = at::ones({p.dim}, at::kFloat);
  p.weight = ones.data_ptr<float>();
}

}  // namespace

void rms_norm_forward_cpu(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                          const std::optional<at::Tensor>& weight, at::Tensor& y,
                          const std::optional<at::Tensor>& h, at::Tensor& rstd, double eps) {
  RmsNormForwardParams p = rms_norm_forward_params(x, residual, weight, y, h, rstd, eps, at::kCPU);
  if (p.rows == 0) return;
  at::Tensor ones;
  weight_or_ones(p, ones);
  const cpu::ElemType x_type = cpu::elem_type(x.scalar_type());
  const cpu::RmsNormForwardTypes types{
      x_type, residual.has_value() ? cpu::elem_type(residual->scalar_type()) : x_type,
      h.has_value() ? cpu::elem_type(h->scalar_type()) : x_type, cpu::elem_type(y.scalar_type())};
  const cpu::RmsNormForwardFn fn = forward_variant(cpu::selected_isa());
  parallel_with_scratch(p.rows, std::max<int64_t>(1, kTaskElements / p.dim), p.dim,
                        cpu::kForwardScratchRows,
                        [&](int64_t begin, int64_t end, float* scratch) {
                          fn(p, types, begin, end, scratch);
                        });
}

void rms_norm_backward_cpu(const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_h,
                           const at::Tensor& inp, const std::optional<at::Tensor>& weight,
                           const at::Tensor& rstd, at::Tensor& dx,
                           const std::optional<at::Tensor>& dresidual,
                           const std::optional<at::Tensor>& dweight) {
  RmsNormBackwardCall call = rms_norm_backward_call(grad_y, grad_h, inp, weight, rstd, dx,
                                                    dresidual, dweight, at::kCPU);
  RmsNormBackwardParams& p = call.params;
  if (p.rows == 0) return;
  at::Tensor ones;
  weight_or_ones(p, ones);
  const int64_t blocks = (p.rows + p.block_rows - 1) / p.block_rows;
  const cpu::ElemType inp_type = cpu::elem_type(inp.scalar_type());
  const cpu::ElemType dx_type = cpu::elem_type(dx.scalar_type());
  const cpu::RmsNormBackwardTypes types{
      cpu::elem_type(grad_y.scalar_type()),
      grad_h.has_value() ? cpu::elem_type(grad_h->scalar_type()) : inp_type, inp_type, dx_type,
      dresidual.has_value() ? cpu::elem_type(dresidual->scalar_type()) : dx_type};
  const cpu::RmsNormBackwardFn fn = backward_variant(cpu::selected_isa());
  parallel_with_scratch(blocks, std::max<int64_t>(1, kTaskElements / (p.block_rows * p.dim)),
                        p.dim, cpu::kBackwardScratchRows,
                        [&](int64_t begin, int64_t end, float* scratch) {
                          fn(p, types, begin, end, scratch);
                        });
  if (p.partial == nullptr) return;
  // The partials summed in block order for every column: the same bits for any thread split.
  const int64_t dim = p.dim;
  const int64_t column_grain = std::max<int64_t>(16, kTaskElements / blocks);
  at::parallel_for(0, dim, column_grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) p.dweight[c] = 0.0f;
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = begin; c < end; ++c) p.dweight[c] += p.partial[b * dim + c];
  });
}

}  // namespace llmkernels
