// Opens the code-generation region of one CPU kernel variant.
//
// Included only by isa_unit.h, the whole of each small per-ISA translation unit (e.g.
// rotary_cpu_avx512.cpp), after the standard and intrinsics headers and before the kernel body;
// isa_end.h closes the region.
//
// Why a pragma and not -march flags: the extension is one setuptools target with one set of
// compiler flags, and -march=native would tie a wheel to the build machine. Everything between
// begin and end is compiled for the level; nothing with external inline definitions (std::
// templates, torch headers) may be included there, because the linker could otherwise keep an
// AVX-512 copy of, say, std::min and call it from the generic path. Helpers live in an unnamed
// namespace inside LLMK_ISA_NS, so only the entry points have external linkage, each under a
// namespace named after its level.
//
// fp-contract=off: the compiler never fuses a product and a sum, so a plain expression rounds the
// same way at every level. Kernels written only with plain expressions (rotary, sinusoidal, cross-
// entropy) therefore give bitwise the same float32 result at every level. A kernel that asks for
// fused multiply-adds explicitly (attention's vfma, its vdpbf16ps products) is bitwise
// reproducible per level, for any thread count, but not across levels.
//
// no-wrapv: Python's build flags carry -fwrapv, under which GCC 12 kept the GEMM tile's twelve
// accumulators in memory, a store after every update (0.5x the speed); the kernels never rely on
// signed overflow wrapping, so the region is compiled with plain C++ semantics.
//
// LLMK_ALWAYS_INLINE (defined here, removed by isa_end.h) marks the small helpers of the region:
// they must inline into the hot loops, and inlining also keeps every call inside one level.
#if !defined(LLMK_ISA_LEVEL) || !defined(LLMK_ISA_NS)
#error "define LLMK_ISA_LEVEL and LLMK_ISA_NS before including isa_begin.h"
#endif

#if defined(__clang__)
#if LLMK_ISA_LEVEL == 1
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif LLMK_ISA_LEVEL == 2
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))), apply_to = function)
#elif LLMK_ISA_LEVEL == 3
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,prefer-vector-width=512"))), apply_to = function)
#endif
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#if LLMK_ISA_LEVEL == 1
#pragma GCC target("avx2,fma,f16c")
#elif LLMK_ISA_LEVEL == 2
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")
#elif LLMK_ISA_LEVEL == 3
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,prefer-vector-width=512")
#endif
#pragma GCC optimize("fp-contract=off", "no-wrapv")
#endif

#define LLMK_ALWAYS_INLINE inline __attribute__((always_inline))
