// The swiglu CPU kernels compiled for the avx512bf16 level (see common/isa_unit.h).
#define LLMK_ISA_LEVEL 3
#define LLMK_ISA_NS cpu_avx512bf16
#define LLMK_KERNEL_IMPL "swiglu/swiglu_cpu_kernel_impl.h"
#include "../common/isa_unit.h"
