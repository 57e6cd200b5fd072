// Plain types shared by the torch glue and the per-ISA kernels (no functions: see isa_begin.h).
#pragma once

#include <cstdint>

namespace llmkernels {
namespace cpu {

// Element type of an activation tensor as the kernels see it; math is always float32.
enum class ElemType : int32_t { f32 = 0, f16 = 1, bf16 = 2 };

}  // namespace cpu
}  // namespace llmkernels
