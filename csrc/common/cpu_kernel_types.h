// Plain types shared by the torch glue and the per-ISA kernels (no functions: see isa_begin.h).
#pragma once

#include <cstdint>

namespace llmkernels {
namespace cpu {

// Element type of an activation tensor as the kernels see it; math is always float32.
enum class ElemType : int32_t { f32 = 0, f16 = 1, bf16 = 2 };

// Outputs at least this large (about a last-level cache) that do not alias their input are
// written with non-temporal stores: the data would not stay cached for the next op anyway.
constexpr int64_t kStreamingMinBytes = int64_t{32} << 20;

// The most elements a kernel converts and stores in one go (the size of its scratch buffers).
constexpr int64_t kMaxStoreBlock = 256;

}  // namespace cpu
}  // namespace llmkernels
