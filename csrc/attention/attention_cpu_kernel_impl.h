// Flash-attention kernel body, compiled once per ISA level: include only between isa_begin.h and
// isa_end.h (see there), after <cstddef>/<cstdint>. No include guard on purpose.
//
// Tiles keep the query index in the vector lanes: the scores of a (query block, key block) pair
// are S^T (keys x queries), the forward accumulator is O^T (head_dim x queries), and every tile
// product is C (+)= A * B with A read one scalar at a time (broadcast) and B, C row-major with 16
// lanes per vector. The online softmax is then element-wise across rows (no lane shuffles).
// Products use explicit FMA (vfma; vdpbf16ps for bf16 at the avx512bf16 level): results are
// deterministic per ISA level and independent of the thread count, but differ between levels.
//
// The parts, in dependency order: attention_cpu_gemm_impl.h (tile products),
// attention_cpu_tiles_impl.h (geometry, masks, scores), attention_cpu_forward_impl.h,
// attention_cpu_operands_impl.h (the backward's tile operands), attention_cpu_backward_impl.h.
#include "attention_cpu_kernel.h"

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

#include "../common/cpu_convert_impl.h"
#include "../common/cpu_vec_impl.h"
#include "../common/cpu_dispatch_impl.h"
#include "attention_cpu_gemm_impl.h"
#include "attention_cpu_tiles_impl.h"
#include "attention_cpu_forward_impl.h"
#include "attention_cpu_operands_impl.h"
#include "attention_cpu_backward_impl.h"

}  // namespace

void attention_fwd_task(const cpu::AttentionFwdArgs& a, int64_t task, float* scratch) {
  visit_elem_type(a.p.dtype, [&](auto type) {
    fwd_dispatch<typename decltype(type)::type>(a, task, scratch);
  });
}

void attention_bwd_kv_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  visit_elem_type(a.p.dtype, [&](auto type) {
    bwd_kv_dispatch<typename decltype(type)::type>(a, task, scratch);
  });
}

void attention_bwd_dq_task(const cpu::AttentionBwdArgs& a, int64_t task, float* scratch) {
  visit_elem_type(a.p.dtype, [&](auto type) {
    bwd_dq_task<typename decltype(type)::type>(a, task, scratch);
  });
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
