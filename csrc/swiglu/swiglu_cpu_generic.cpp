// The swiglu CPU kernels compiled for the generic level (see common/isa_unit.h).
#define LLMK_ISA_LEVEL 0
#define LLMK_ISA_NS cpu_generic
#define LLMK_KERNEL_IMPL "swiglu/swiglu_cpu_kernel_impl.h"
#include "../common/isa_unit.h"
