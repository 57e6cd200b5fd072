// Python bindings of the rotary entry points (registered into _C by module.cpp). The CPU and CUDA
// functions take the same arguments, so one binding helper serves both.
#include <torch/extension.h>

#include "rotary.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

template <typename Fn>
void def_rotary(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("q"), py::arg("q_out"), py::arg("k"), py::arg("k_out"), py::arg("cos"),
        py::arg("sin"), py::arg("position_ids"), py::arg("interleaved"), py::arg("conjugate"),
        py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace

void register_rotary(py::module_& m) {
  def_rotary(m, "rotary_cpu", &rotary_cpu,
             "Rotary embedding on CPU tensors (batch, heads, seq, head_dim); writes q_out and "
             "k_out.");
#ifdef LLMK_WITH_CUDA
  def_rotary(m, "rotary_cuda", &rotary_cuda,
             "Rotary embedding on CUDA tensors (batch, heads, seq, head_dim); writes q_out and "
             "k_out.");
#endif
}

}  // namespace llmkernels
