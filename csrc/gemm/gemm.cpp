// Python bindings of the CPU GEMM entry points (registered into _C by module.cpp).
#include <torch/extension.h>

#include "gemm.h"

namespace py = pybind11;

namespace llmkernels {

void register_gemm(py::module_& m) {
  m.def("gemm_cpu", &gemm_cpu, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("accumulate"),
        py::call_guard<py::gil_scoped_release>(),
        "out = a @ b (or out += a @ b) for float32 CPU matrices, a and b of any strides.");
  m.def("gemm_cpu_available", &gemm_cpu_available,
        "Whether the CPU GEMM kernel exists for the selected CPU ISA level (AVX2).");
}

}  // namespace llmkernels
