#include "cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <sstream>

#include <c10/util/Exception.h>

namespace llmkernels {
namespace cpu {
namespace {

bool cpu_has(Isa isa) {
#if LLMK_CPU_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the ymm/zmm state (XGETBV).
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2: return avx2;
    case Isa::avx512: return avx512;
    case Isa::avx512bf16: return avx512 && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

bool compiled(Isa isa) { return LLMK_CPU_X86 || isa == Isa::generic; }

std::string join(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size(); ++i) os << (i ? ", " : "") << names[i];
  return os.str();
}

bool parse(const std::string& name, Isa* out) {
  for (int i = 0; i < kNumIsa; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

Isa best_supported() {
  Isa best = Isa::generic;
  for (Isa isa : supported_isas()) best = isa;  // ascending order
  return best;
}

// The level named by LLMKERNELS_CPU_ISA, read on the first kernel call. A value this build or
// CPU cannot run is refused with a ValueError (a warning scrolled past in a log, and the run went
// on at another level than the one asked for). The exception leaves the static uninitialised,
// so every later call raises it again until the variable is fixed.
Isa level_from_environment() {
  const char* env = std::getenv("LLMKERNELS_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_supported();
  Isa wanted;
  const std::string name(env);
  TORCH_CHECK_VALUE(parse(name, &wanted) && compiled(wanted) && cpu_has(wanted),
                    "llmkernels: LLMKERNELS_CPU_ISA='", name,
                    "' is not a CPU ISA level this build and CPU can run; accepted values: ",
                    join(isa_names(supported_isas())), " (or unset it for the best one)");
  return wanted;
}

std::atomic<int>& current() {
  static std::atomic<int> level{static_cast<int>(level_from_environment())};
  return level;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512bf16: return "avx512bf16";
  }
  return "unknown";
}

std::vector<Isa> compiled_isas() {
  std::vector<Isa> out;
  for (int i = 0; i < kNumIsa; ++i)
    if (compiled(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
  return out;
}

std::vector<Isa> supported_isas() {
  static const std::vector<Isa> supported = [] {
    std::vector<Isa> out;
    for (Isa isa : compiled_isas())
      if (cpu_has(isa)) out.push_back(isa);
    return out;
  }();
  return supported;
}

Isa selected_isa() { return static_cast<Isa>(current().load(std::memory_order_relaxed)); }

void set_isa(const std::string& name) {
  Isa isa;
  const std::string supported = join(isa_names(supported_isas()));
  TORCH_CHECK_VALUE(parse(name, &isa), "llmkernels: argument 'name': unknown CPU ISA level '",
                    name, "'; expected one of generic, avx2, avx512, avx512bf16 (supported here: ",
                    supported, ")");
  TORCH_CHECK_VALUE(compiled(isa) && cpu_has(isa), "llmkernels: argument 'name': CPU ISA level '",
                    name, "' is not ", compiled(isa) ? "supported by this CPU" : "compiled in",
                    "; supported here: ", supported);
  current().store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::vector<std::string> isa_names(const std::vector<Isa>& isas) {
  std::vector<std::string> out;
  for (Isa isa : isas) out.emplace_back(isa_name(isa));
  return out;
}

}  // namespace cpu
}  // namespace llmkernels
