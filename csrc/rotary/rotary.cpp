// Python bindings of the rotary entry points (registered into _C by module.cpp).
#include <torch/extension.h>

#include "rotary.h"

namespace py = pybind11;

namespace llmkernels {

void register_rotary(py::module_& m) {
  m.def("rotary_cpu", &rotary_cpu, py::arg("q"), py::arg("q_out"), py::arg("k"),
        py::arg("k_out"), py::arg("cos"), py::arg("sin"), py::arg("position_ids"),
        py::arg("interleaved"), py::arg("conjugate"), py::call_guard<py::gil_scoped_release>(),
        "Rotary embedding on CPU tensors (batch, heads, seq, head_dim); writes q_out and k_out.");
#ifdef LLMK_WITH_CUDA
  m.def("rotary_cuda", &rotary_cuda, py::arg("q"), py::arg("q_out"), py::arg("k"),
        py::arg("k_out"), py::arg("cos"), py::arg("sin"), py::arg("position_ids"),
        py::arg("interleaved"), py::arg("conjugate"), py::call_guard<py::gil_scoped_release>(),
        "Rotary embedding on CUDA tensors (batch, heads, seq, head_dim); writes q_out and k_out.");
#endif
}

}  // namespace llmkernels
