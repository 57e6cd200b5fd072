// The swiglu CPU kernels compiled for the avx512 level (see common/isa_unit.h).
#define LLMK_ISA_LEVEL 2
#define LLMK_ISA_NS cpu_avx512
#define LLMK_KERNEL_IMPL "swiglu/swiglu_cpu_kernel_impl.h"
#include "../common/isa_unit.h"
