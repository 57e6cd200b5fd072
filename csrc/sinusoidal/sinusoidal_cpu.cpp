// Torch glue for the sinusoidal CPU kernel: checks, dtype mapping, threading and ISA dispatch.
// The arithmetic lives in sinusoidal_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>
#include <limits>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../common/checks.h"
#include "../common/cpu_elem_type.h"
#include "../common/cpu_isa.h"
#include "../common/overlap_checks.h"
#include "../common/position_ids.h"
#include "sinusoidal.h"
#include "sinusoidal_cpu_kernel.h"

namespace llmkernels {
namespace {

cpu::SinusoidalRowsFn sinusoidal_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::add_sinusoidal_rows;
    case cpu::Isa::avx512: return &cpu_avx512::add_sinusoidal_rows;
    case cpu::Isa::avx2: return &cpu_avx2::add_sinusoidal_rows;
#endif
    default: return &cpu_generic::add_sinusoidal_rows;
  }
}

}  // namespace

void add_sinusoidal_cpu(const at::Tensor& x, at::Tensor& out, const at::Tensor& table,
                        const at::Tensor& inv_freq, const std::optional<at::Tensor>& position_ids,
                        double scale) {
  LLMK_CHECK_DEVICE_TYPE(x, "x", at::kCPU);
  LLMK_CHECK_FLOATING(x, "x");
  LLMK_CHECK_DIM(x, "x", 3);
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(x, "x");
  LLMK_CHECK_DEVICE_TYPE(out, "out", at::kCPU);
  LLMK_CHECK_DTYPE(out, "out", x.scalar_type());
  LLMK_CHECK_SHAPE(out, "out", x.sizes());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(out, "out");
  check_output(out, "out");
  check_in_place_or_disjoint(x, "x", out, "out");

  const int64_t batch = x.size(0), seq = x.size(1), d_model = x.size(2);
  LLMK_CHECK_DEVICE_TYPE(table, "table", at::kCPU);
  LLMK_CHECK_DIM(table, "table", 2);
  LLMK_CHECK_DTYPE(table, "table", at::kFloat);
  LLMK_CHECK_CONTIGUOUS(table, "table");
  LLMK_CHECK_SIZE(table, "table", 1, d_model);
  LLMK_CHECK_DEVICE_TYPE(inv_freq, "inv_freq", at::kCPU);
  LLMK_CHECK_DIM(inv_freq, "inv_freq", 1);
  LLMK_CHECK_DTYPE(inv_freq, "inv_freq", at::kFloat);
  LLMK_CHECK_CONTIGUOUS(inv_freq, "inv_freq");
  LLMK_CHECK_SIZE(inv_freq, "inv_freq", 0, (d_model + 1) / 2);

  // Any position >= 0 is valid: the table holds the first rows, the kernel computes the rest.
  const PositionIds pos = check_position_ids(position_ids, batch, seq,
                                             std::numeric_limits<int64_t>::max(), "PE", at::kCPU);

  const int64_t rows = batch * seq;
  if (rows == 0 || d_model == 0) return;

  cpu::SinusoidalRowsArgs args{};
  args.x = x.data_ptr();
  args.out = out.data_ptr();
  args.x_stride_b = x.stride(0);
  args.x_stride_s = x.stride(1);
  args.out_stride_b = out.stride(0);
  args.out_stride_s = out.stride(1);
  args.dtype = cpu::elem_type(x.scalar_type());
  args.table = table.data_ptr<float>();
  args.table_rows = table.size(0);
  args.inv_freq = inv_freq.data_ptr<float>();
  args.position_ids = pos.data;
  args.position_stride_b = pos.batch_stride;
  args.seq = seq;
  args.d_model = d_model;
  args.scale = static_cast<float>(scale);
  args.stream_out = out.data_ptr() != x.data_ptr() &&
                    out.numel() * out.element_size() >= cpu::kStreamingMinBytes;

  const cpu::SinusoidalRowsFn fn = sinusoidal_variant(cpu::selected_isa());
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / d_model);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
}

}  // namespace llmkernels
