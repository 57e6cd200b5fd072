// The attention CPU kernel compiled for the avx2 level (see common/isa_begin.h).
#include "../common/cpu_arch.h"
#if LLMK_CPU_X86
#include <cstddef>
#include <cstdint>
#include <immintrin.h>

#define LLMK_ISA_LEVEL 1
#define LLMK_ISA_NS cpu_avx2
#include "../common/isa_begin.h"
#include "attention_cpu_kernel_impl.h"
#include "../common/isa_end.h"
#endif  // LLMK_CPU_X86
