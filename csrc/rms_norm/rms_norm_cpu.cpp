// Torch glue for the rms_norm CPU kernel: threading, ISA dispatch and the fixed-order sum of the
// weight-gradient partials (argument checks: rms_norm_arguments.h). The arithmetic lives in
// rms_norm_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>
#include <cstdint>
#include <memory>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

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

// Runs fn(begin, end, scratch) over [0, n) in tasks of at least `grain`, each task with its own
// float32 scratch of `scratch_floats`.
template <typename Fn>
void parallel_with_scratch(int64_t n, int64_t grain, int64_t scratch_floats, const Fn& fn) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> scratch(new float[static_cast<size_t>(scratch_floats)]());
    fn(begin, end, scratch.get());
  });
}

int64_t padded_row(int64_t dim) { return (dim + 15) / 16 * 16; }

}  // namespace

void rms_norm_forward_cpu(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                          const std::optional<at::Tensor>& weight, at::Tensor& y,
                          const std::optional<at::Tensor>& h, at::Tensor& rstd, double eps) {
  const RmsNormShape shape =
      check_rms_norm_forward_arguments(x, residual, weight, y, h, rstd, eps, at::kCPU);
  if (shape.rows == 0) return;
  cpu::RmsNormForwardArgs args{};
  args.dtype = cpu::elem_type(x.scalar_type());
  args.dim = shape.dim;
  args.x = x.data_ptr();
  args.x_stride = x.stride(0);
  if (residual.has_value()) {
    args.residual = residual->data_ptr();
    args.residual_stride = residual->stride(0);
    args.h = h->data_ptr();
    args.h_stride = h->stride(0);
  }
  args.weight = weight.has_value() ? weight->data_ptr<float>() : nullptr;
  args.y = y.data_ptr();
  args.y_stride = y.stride(0);
  args.rstd = rstd.data_ptr<float>();
  args.eps = static_cast<float>(eps);

  const cpu::RmsNormForwardFn fn = forward_variant(cpu::selected_isa());
  const int64_t grain = std::max<int64_t>(1, kTaskElements / shape.dim);
  parallel_with_scratch(shape.rows, grain, padded_row(shape.dim),
                        [&](int64_t begin, int64_t end, float* scratch) {
                          fn(args, begin, end, scratch);
                        });
}

void rms_norm_backward_cpu(const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_h,
                           const at::Tensor& inp, const std::optional<at::Tensor>& weight,
                           const at::Tensor& rstd, at::Tensor& dx,
                           const std::optional<at::Tensor>& dweight) {
  const RmsNormShape shape = check_rms_norm_backward_arguments(grad_y, grad_h, inp, weight, rstd,
                                                               dx, dweight, at::kCPU);
  const int64_t rows = shape.rows, dim = shape.dim;
  const int64_t block_rows = rms_norm_block_rows(rows);
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  at::Tensor partial;
  if (dweight.has_value() && blocks > 0)
    partial = at::empty({blocks, dim}, inp.options().dtype(at::kFloat));

  cpu::RmsNormBackwardArgs args{};
  args.dtype = cpu::elem_type(inp.scalar_type());
  args.rows = rows;
  args.dim = dim;
  args.grad_y = grad_y.data_ptr();
  args.grad_y_stride = grad_y.stride(0);
  if (grad_h.has_value()) {
    args.grad_h = grad_h->data_ptr();
    args.grad_h_stride = grad_h->stride(0);
  }
  args.inp = inp.data_ptr();
  args.inp_stride = inp.stride(0);
  args.weight = weight.has_value() ? weight->data_ptr<float>() : nullptr;
  args.rstd = rstd.data_ptr<float>();
  args.dx = dx.data_ptr();
  args.dx_stride = dx.stride(0);
  args.dweight_partial = partial.defined() ? partial.data_ptr<float>() : nullptr;
  args.block_rows = block_rows;

  const cpu::RmsNormBackwardFn fn = backward_variant(cpu::selected_isa());
  const int64_t grain = std::max<int64_t>(1, kTaskElements / (block_rows * dim));
  parallel_with_scratch(blocks, grain, 2 * padded_row(dim),
                        [&](int64_t begin, int64_t end, float* scratch) {
                          fn(args, begin, end, scratch);
                        });
  if (!dweight.has_value()) return;
  // The partials summed in block order for every column: the same bits for any thread split.
  float* out = dweight->data_ptr<float>();
  const float* p = args.dweight_partial;
  const int64_t column_grain = std::max<int64_t>(16, kTaskElements / std::max<int64_t>(1, blocks));
  at::parallel_for(0, dim, column_grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) out[c] = 0.0f;
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = begin; c < end; ++c) out[c] += p[b * dim + c];
  });
}

}  // namespace llmkernels
