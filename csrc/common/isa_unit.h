// The whole of a per-ISA translation unit: one CPU kernel body compiled for one ISA level.
//
// A unit (e.g. rotary/rotary_cpu_avx512.cpp) is three defines and this include:
//   #define LLMK_ISA_LEVEL 2                                // 0 generic, 1 avx2, 2 avx512, 3 avx512bf16
//   #define LLMK_ISA_NS cpu_avx512                         // namespace of the variant's code
//   #define LLMK_KERNEL_IMPL "rotary/rotary_cpu_kernel_impl.h"  // the body, from csrc/
//   #include "../common/isa_unit.h"
// Standard and intrinsics headers come first, outside the code-generation region (see
// isa_begin.h); levels above generic compile to nothing on a CPU that is not x86-64.
#if !defined(LLMK_ISA_LEVEL) || !defined(LLMK_ISA_NS) || !defined(LLMK_KERNEL_IMPL)
#error "define LLMK_ISA_LEVEL, LLMK_ISA_NS and LLMK_KERNEL_IMPL before including isa_unit.h"
#endif

#include <cstddef>
#include <cstdint>

#include "cpu_arch.h"
#if LLMK_CPU_X86
#if LLMK_ISA_LEVEL >= 1
#include <immintrin.h>
#else
#include <emmintrin.h>  // SSE2 (baseline x86-64): the streaming-store helpers of cpu_convert_impl.h
#endif
#endif

#if LLMK_CPU_X86 || LLMK_ISA_LEVEL == 0
#include "isa_begin.h"
#include LLMK_KERNEL_IMPL
#include "isa_end.h"
#endif
#undef LLMK_KERNEL_IMPL
