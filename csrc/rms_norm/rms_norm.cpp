// Python bindings of the rms_norm entry points (registered into _C by module.cpp). The CPU and
// CUDA functions take the same arguments, so one binding helper per entry point serves both.
#include <torch/extension.h>

#include "rms_norm.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

template <typename Fn>
void def_forward(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("x"), py::arg("residual"), py::arg("weight"), py::arg("y"),
        py::arg("h"), py::arg("rstd"), py::arg("eps"), py::call_guard<py::gil_scoped_release>(),
        doc);
}

template <typename Fn>
void def_backward(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("grad_y"), py::arg("grad_h"), py::arg("inp"), py::arg("weight"),
        py::arg("rstd"), py::arg("dx"), py::arg("dresidual"), py::arg("dweight"),
        py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace

void register_rms_norm(py::module_& m) {
  def_forward(m, "rms_norm_forward_cpu", &rms_norm_forward_cpu,
              "RMSNorm of CPU rows (rows, D) with the optional residual add: writes y, h and "
              "rstd (see rms_norm.h).");
  def_backward(m, "rms_norm_backward_cpu", &rms_norm_backward_cpu,
               "RMSNorm backward on CPU rows: writes dx and, when given, dresidual and dweight "
               "(see rms_norm.h).");
#ifdef LLMK_WITH_CUDA
  def_forward(m, "rms_norm_forward_cuda", &rms_norm_forward_cuda,
              "RMSNorm of CUDA rows (rows, D) with the optional residual add: writes y, h and "
              "rstd (see rms_norm.h).");
  def_backward(m, "rms_norm_backward_cuda", &rms_norm_backward_cuda,
               "RMSNorm backward on CUDA rows: writes dx and, when given, dweight (see "
               "rms_norm.h).");
#endif
}

}  // namespace llmkernels
