// The rms_norm CPU kernel compiled for the generic level (see common/isa_unit.h).
#define LLMK_ISA_LEVEL 0
#define LLMK_ISA_NS cpu_generic
#define LLMK_KERNEL_IMPL "rms_norm/rms_norm_cpu_kernel_impl.h"
#include "../common/isa_unit.h"
