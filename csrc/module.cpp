// The compiled extension llmkernels._C: kernel entry points plus build and CPU-variant info. Each
// op family binds all its entry points, CPU and (built with LLMK_WITH_CUDA) CUDA, in one
// register_<family> function in csrc/<family>/<family>.cpp.
#include <torch/extension.h>

#include <string>

#include "common/cpu_isa.h"

// Both passed by setup.py as string macros.
#ifndef LLMK_TORCH_VERSION
#define LLMK_TORCH_VERSION "unknown"
#endif
#ifndef LLMK_CUDA_ARCHS
#define LLMK_CUDA_ARCHS ""
#endif

namespace py = pybind11;

namespace llmkernels {
void register_rotary(py::module_& m);
void register_sinusoidal(py::module_& m);
void register_cross_entropy(py::module_& m);
void register_attention(py::module_& m);
void register_distillation(py::module_& m);
void register_rms_norm(py::module_& m);
void register_swiglu(py::module_& m);
void register_gemm(py::module_& m);
}  // namespace llmkernels

namespace {

std::string compiler_name() {
#if defined(__clang__)
  return "clang " + std::to_string(__clang_major__) + "." + std::to_string(__clang_minor__) + "." +
         std::to_string(__clang_patchlevel__);
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

py::dict build_info() {
  namespace cpu = llmkernels::cpu;
  py::dict info;
  info["compiler"] = compiler_name();
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  info["cpu_isa_variants"] = cpu::isa_names(cpu::compiled_isas());
  info["cpu_isa"] = std::string(cpu::isa_name(cpu::selected_isa()));
  info["cpu_isa_supported"] = cpu::isa_names(cpu::supported_isas());
#ifdef LLMK_WITH_CUDA
  info["cuda"] = true;
#else
  info["cuda"] = false;
#endif
  info["cuda_archs"] = std::string(LLMK_CUDA_ARCHS);
  info["torch_version"] = std::string(LLMK_TORCH_VERSION);
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "llmkernels compiled kernels (C++ CPU, optional CUDA)";
  m.def("build_info", &build_info, "What this extension was built with and for.");
  m.def(
      "cpu_isa", [] { return std::string(llmkernels::cpu::isa_name(llmkernels::cpu::selected_isa())); },
      "The CPU instruction-set level whose kernel variants run now.");
  m.def("set_cpu_isa", &llmkernels::cpu::set_isa, py::arg("name"),
        "Select the CPU kernel variant by level name (generic, avx2, avx512, avx512bf16); "
        "ValueError if this build or CPU cannot run it.");
  llmkernels::register_rotary(m);
  llmkernels::register_sinusoidal(m);
  llmkernels::register_cross_entropy(m);
  llmkernels::register_attention(m);
  llmkernels::register_distillation(m);
  llmkernels::register_rms_norm(m);
  llmkernels::register_swiglu(m);
  llmkernels::register_gemm(m);
}
