// The float32 GEMM CPU kernel compiled for the avx2 level (see common/isa_unit.h).
#define LLMK_ISA_LEVEL 1
#define LLMK_ISA_NS cpu_avx2
#define LLMK_KERNEL_IMPL "gemm/gemm_cpu_kernel_impl.h"
#include "../common/isa_unit.h"
