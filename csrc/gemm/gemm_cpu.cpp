// Torch glue for the float32 CPU GEMM: checks, the split across threads, packing workspaces and
// ISA dispatch. The arithmetic lives in gemm_cpu_kernel_impl.h.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../common/checks.h"
#include "../common/cpu_isa.h"
#include "../common/overlap_checks.h"
#include "gemm.h"
#include "gemm_cpu_kernel.h"

namespace llmkernels {
namespace {

// The AVX2 tile serves the AVX-512 levels too (their CPUs run AVX2): on the 2-core Zen 4 it ran
// 1.03-1.37x MKL's torch.mm on the losses' and the layers' products (BENCHMARKS.md, twelfth session).
cpu::GemmBlockFn gemm_variant(cpu::Isa isa) {
#if LLMK_CPU_X86
  if (isa >= cpu::Isa::avx2) return &cpu_avx2::gemm_block;
#endif
  (void)isa;
  return nullptr;
}

// Each thread packs into its own workspace, kept for the thread's life: a fresh 4 MB per call
// would be fresh pages (page faults) on every GEMM.
float* thread_workspace() {
  thread_local std::vector<float> buffer(cpu::kGemmWorkspaceFloats + 16);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (64 - address % 64) % 64 / sizeof(float);
}

void check_matrix(const at::Tensor& t, const char* name) {
  LLMK_CHECK_DEVICE_TYPE(t, name, at::kCPU);
  LLMK_CHECK_DTYPE(t, name, at::kFloat);
  LLMK_CHECK_DIM(t, name, 2);
}

}  // namespace

bool gemm_cpu_available() { return gemm_variant(cpu::selected_isa()) != nullptr; }

void gemm_cpu(const at::Tensor& a, const at::Tensor& b, at::Tensor& out, bool accumulate) {
  const cpu::GemmBlockFn fn = gemm_variant(cpu::selected_isa());
  LLMK_CHECK_ARG(fn != nullptr, "a", "no CPU GEMM kernel at ISA level ", cpu::isa_name(cpu::selected_isa()),
                 " (it needs AVX2); use torch.mm");
  check_matrix(a, "a");
  check_matrix(b, "b");
  check_matrix(out, "out");
  LLMK_CHECK_ARG(b.size(0) == a.size(1), "b", "expected ", a.size(1), " rows to match a ", a.sizes(), ", got ",
                 b.sizes());
  LLMK_CHECK_SHAPE(out, "out", (std::vector<int64_t>{a.size(0), b.size(1)}));
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(out, "out");
  check_output(out, "out");
  check_disjoint(out, "out", a, "a");
  check_disjoint(out, "out", b, "b");
  const int64_t m = a.size(0), n = b.size(1), k = a.size(1);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  // Threads split the longer side of C into whole tiles; each packs its own operand slices.
  const bool split_columns = n >= m;
  const int64_t tile = split_columns ? cpu::kGemmNr : cpu::kGemmMr;
  const int64_t tiles = ((split_columns ? n : m) + tile - 1) / tile;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tiles));
  const int64_t per_part = (tiles + parts - 1) / parts * tile;
  const float* a_data = a.data_ptr<float>();
  const float* b_data = b.data_ptr<float>();
  float* c_data = out.data_ptr<float>();
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      const int64_t start = part * per_part;
      const int64_t stop = std::min(split_columns ? n : m, start + per_part);
      if (start >= stop) continue;
      cpu::GemmArgs args{a_data, a.stride(0), a.stride(1), b_data, b.stride(0), b.stride(1), c_data,
                         out.stride(0), m, n, k, accumulate};
      if (split_columns) {
        args.b += start * b.stride(1);
        args.c += start;
        args.n = stop - start;
      } else {
        args.a += start * a.stride(0);
        args.c += start * out.stride(0);
        args.m = stop - start;
      }
      fn(args, thread_workspace());
    }
  });
}

}  // namespace llmkernels
