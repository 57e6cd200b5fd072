// Maps an activation tensor's dtype to the ElemType the per-ISA CPU kernels take (torch glue only).
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include "cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

inline ElemType elem_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ElemType::f32;
    case at::kHalf: return ElemType::f16;
    case at::kBFloat16: return ElemType::bf16;
    default: TORCH_CHECK_VALUE(false, "llmkernels: unsupported dtype ", t);
  }
}

}  // namespace cpu
}  // namespace llmkernels
