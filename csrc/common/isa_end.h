// Closes the region opened by isa_begin.h.
#if defined(__clang__)
#if LLMK_ISA_LEVEL >= 1
#pragma clang attribute pop
#endif
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
#undef LLMK_ALWAYS_INLINE
#undef LLMK_ISA_LEVEL
#undef LLMK_ISA_NS
