// The attention CPU kernel compiled for the generic level (see common/isa_begin.h).
#include <cstddef>
#include <cstdint>

#include "../common/cpu_arch.h"
#if LLMK_CPU_X86
#include <emmintrin.h>  // SSE2 (baseline x86-64): streaming-store helpers of cpu_convert_impl.h
#endif

#define LLMK_ISA_LEVEL 0
#define LLMK_ISA_NS cpu_generic
#include "../common/isa_begin.h"
#include "attention_cpu_kernel_impl.h"
#include "../common/isa_end.h"
