// Which CPU architecture this translation unit targets (macros only).
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define LLMK_CPU_X86 1
#else
#define LLMK_CPU_X86 0
#endif
