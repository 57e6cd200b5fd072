// Python bindings of the sinusoidal-encoding entry points (registered into _C by module.cpp).
#include <torch/extension.h>

#include "sinusoidal.h"

namespace py = pybind11;

namespace llmkernels {

void register_sinusoidal(py::module_& m) {
  m.def("add_sinusoidal_cpu", &add_sinusoidal_cpu, py::arg("x"), py::arg("out"),
        py::arg("table"), py::arg("inv_freq"), py::arg("position_ids"), py::arg("scale"),
        py::call_guard<py::gil_scoped_release>(),
        "out = x * scale + PE(position) on CPU tensors (batch, seq, d_model): PE from table for "
        "positions below its rows, else computed from inv_freq.");
#ifdef LLMK_WITH_CUDA
  m.def("add_sinusoidal_cuda", &add_sinusoidal_cuda, py::arg("x"), py::arg("out"),
        py::arg("inv_freq"), py::arg("position_ids"), py::arg("scale"),
        py::call_guard<py::gil_scoped_release>(),
        "out = x * scale + PE(position) on CUDA tensors (batch, seq, d_model), PE computed from "
        "inv_freq.");
#endif
}

}  // namespace llmkernels
