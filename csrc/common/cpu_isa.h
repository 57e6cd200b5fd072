// Run-time choice of the CPU kernel variant.
//
// Hot CPU kernels are compiled once per instruction-set level (each in its own translation unit,
// see isa_begin.h) and the glue calls the variant for the level selected here: the best level
// that was compiled and that this CPU (and OS) supports, unless overridden by the environment
// variable LLMKERNELS_CPU_ISA=<level> (read once) or by set_cpu_isa() (tests).
#pragma once

#include <string>
#include <vector>

#include "cpu_arch.h"

namespace llmkernels {
namespace cpu {

// Ordered: a higher level implies every lower one.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2, avx512bf16 = 3 };
constexpr int kNumIsa = 4;

const char* isa_name(Isa isa);
std::vector<Isa> compiled_isas();   // variants in this build
std::vector<Isa> supported_isas();  // compiled variants this CPU can run
Isa selected_isa();                 // the variant the kernels call now
// Select a level by name; ValueError when unknown, not compiled, or not supported by this CPU.
void set_isa(const std::string& name);

std::vector<std::string> isa_names(const std::vector<Isa>& isas);

}  // namespace cpu
}  // namespace llmkernels
