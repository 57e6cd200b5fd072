// Torch glue for the cross-entropy CPU kernel: the host-side target check, threading and ISA
// dispatch (argument checks: cross_entropy_arguments.h).
// The arithmetic lives in cross_entropy_cpu_kernel_impl.h, compiled per ISA level.
#include <algorithm>
#include <cstdint>
#include <memory>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../common/checks.h"
#include "../common/cpu_elem_type.h"
#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "cross_entropy.h"
#include "cross_entropy_arguments.h"
#include "cross_entropy_cpu_kernel.h"

namespace llmkernels {
namespace {

cpu::CrossEntropyRowsFn cross_entropy_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return &cpu_avx512bf16::cross_entropy_rows;
    case cpu::Isa::avx512: return &cpu_avx512::cross_entropy_rows;
    case cpu::Isa::avx2: return &cpu_avx2::cross_entropy_rows;
#endif
    default: return &cpu_generic::cross_entropy_rows;
  }
}

// The per-thread scratch the kernel expects (layout in cross_entropy_cpu_kernel.h).
int64_t cross_entropy_scratch_floats(int64_t classes, bool has_grad, bool capped) {
  if (!has_grad && !capped) return 0;
  const int64_t row = (classes + 15) / 16 * 16;
  const int64_t blocks = (classes + cpu::kMaxStoreBlock - 1) / cpu::kMaxStoreBlock;
  return row * (has_grad ? 1 : 0) + row * (capped ? 1 : 0) + blocks;
}

}  // namespace

void cross_entropy_cpu(const at::Tensor& logits, const at::Tensor& target,
                       const std::optional<at::Tensor>& class_weight, at::Tensor& loss_rows,
                       at::Tensor& lse, const std::optional<at::Tensor>& grad, int64_t ignore_index,
                       double label_smoothing, double z_loss, double softcap, double ce_scale,
                       double z_scale) {
  const CrossEntropyShape shape = check_cross_entropy_arguments(
      logits, target, class_weight, loss_rows, lse, grad, at::kCPU);
  const int64_t rows = shape.rows, classes = shape.classes;
  const float* weight_ptr = nullptr;
  double weight_sum = static_cast<double>(classes);
  if (class_weight.has_value()) {
    weight_ptr = class_weight->data_ptr<float>();
    weight_sum = 0.0;
    for (int64_t c = 0; c < classes; ++c) weight_sum += static_cast<double>(weight_ptr[c]);
  }

  // Host-side range check: one pass over (N,) int64; an out-of-range index would read outside
  // the row.
  const int64_t* target_ptr = target.data_ptr<int64_t>();
  int64_t bad = -1;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = target_ptr[i];
    if (t != ignore_index && (t < 0 || t >= classes)) {
      bad = i;
      break;
    }
  }
  LLMK_CHECK_ARG(bad < 0, "target", "expected class indices in [0, ", classes,
                 ") or ignore_index = ", ignore_index, ", got ", bad < 0 ? 0 : target_ptr[bad],
                 " at index ", bad);
  if (rows == 0) return;

  cpu::CrossEntropyRowsArgs args{};
  args.logits = logits.data_ptr();
  args.logits_stride = logits.stride(0);
  args.target = target_ptr;
  args.class_weight = weight_ptr;
  args.loss_rows = loss_rows.data_ptr<float>();
  args.lse = lse.data_ptr<float>();
  args.grad = grad.has_value() ? grad->data_ptr() : nullptr;
  args.num_classes = classes;
  args.ignore_index = ignore_index;
  args.weight_sum = weight_sum;
  args.label_smoothing = label_smoothing;
  args.z_loss = z_loss;
  args.softcap = softcap > 0.0 ? softcap : 0.0;
  args.ce_scale = ce_scale;
  args.z_scale = z_scale;
  args.dtype = cpu::elem_type(logits.scalar_type());
  args.stream_grad = grad.has_value() && !shape.in_place &&
                     grad->numel() * grad->element_size() >= cpu::kStreamingMinBytes;
  if (grad.has_value() && !shape.in_place)
    advise_huge_pages(grad->data_ptr(), static_cast<size_t>(grad->nbytes()));

  const cpu::CrossEntropyRowsFn fn = cross_entropy_variant(cpu::selected_isa());
  const int64_t scratch_floats =
      cross_entropy_scratch_floats(classes, args.grad != nullptr, args.softcap > 0.0);
  // ~64K elements per task: enough to amortise scheduling, small enough to balance.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, classes));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> scratch;
    if (scratch_floats > 0) scratch.reset(new float[static_cast<size_t>(scratch_floats)]());
    fn(args, begin, end, scratch.get());
  });
}

}  // namespace llmkernels
