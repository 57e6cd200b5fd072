// Python bindings of the attention entry points (registered into _C by module.cpp).
#include <torch/extension.h>

#include "attention.h"

namespace py = pybind11;

namespace llmkernels {

void register_attention(py::module_& m) {
  m.def("attention_forward_cpu", &attention_forward_cpu, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("out"), py::arg("lse"), py::arg("scale"), py::arg("causal"),
        py::arg("window_left"), py::arg("window_right"), py::arg("softcap"),
        py::arg("alibi_slopes"), py::arg("key_padding_mask"),
        py::call_guard<py::gil_scoped_release>(),
        "Flash attention forward on CPU tensors (batch, heads, seq, head_dim); writes out and lse "
        "(see attention.h).");
  m.def("attention_backward_cpu", &attention_backward_cpu, py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("out"), py::arg("dout"), py::arg("lse"), py::arg("dq"),
        py::arg("dk"), py::arg("dv"), py::arg("scale"), py::arg("causal"),
        py::arg("window_left"), py::arg("window_right"), py::arg("softcap"),
        py::arg("alibi_slopes"), py::arg("key_padding_mask"),
        py::call_guard<py::gil_scoped_release>(),
        "Flash attention backward on CPU tensors: writes dq, dk, dv (deterministic; see "
        "attention.h).");
}

}  // namespace llmkernels
