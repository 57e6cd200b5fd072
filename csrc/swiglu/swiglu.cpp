// Python bindings of the swiglu entry points (registered into _C by module.cpp). The CPU and CUDA
// functions take the same arguments, so one binding helper per entry serves both.
#include <torch/extension.h>

#include "swiglu.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

template <typename Fn>
void def_forward(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("gate"), py::arg("up"), py::arg("out"), py::arg("activation"),
        py::call_guard<py::gil_scoped_release>(), doc);
}

template <typename Fn>
void def_backward(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("grad"), py::arg("gate"), py::arg("up"), py::arg("grad_gate"),
        py::arg("grad_up"), py::arg("activation"), py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace

void register_swiglu(py::module_& m) {
  def_forward(m, "swiglu_forward_cpu", &swiglu_forward_cpu,
              "act(gate) * up on CPU (rows, H) tensors; writes out.");
  def_backward(m, "swiglu_backward_cpu", &swiglu_backward_cpu,
               "Gated unit gradients on CPU (rows, H) tensors; writes grad_gate and grad_up.");
#ifdef LLMK_WITH_CUDA
  def_forward(m, "swiglu_forward_cuda", &swiglu_forward_cuda,
              "act(gate) * up on CUDA (rows, H) tensors; writes out.");
  def_backward(m, "swiglu_backward_cuda", &swiglu_backward_cuda,
               "Gated unit gradients on CUDA (rows, H) tensors; writes grad_gate and grad_up.");
#endif
}

}  // namespace llmkernels
