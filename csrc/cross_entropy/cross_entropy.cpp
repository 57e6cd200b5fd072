// Python bindings of the cross-entropy entry points (registered into _C by module.cpp). The CPU
// and CUDA functions take the same arguments, so one binding helper serves both.
#include <torch/extension.h>

#include "cross_entropy.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

template <typename Fn>
void def_cross_entropy(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("logits"), py::arg("target"), py::arg("class_weight"),
        py::arg("loss_rows"), py::arg("lse"), py::arg("grad"), py::arg("ignore_index"),
        py::arg("label_smoothing"), py::arg("z_loss"), py::arg("softcap"), py::arg("ce_scale"),
        py::arg("z_scale"), py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace

void register_cross_entropy(py::module_& m) {
  def_cross_entropy(m, "cross_entropy_cpu", &cross_entropy_cpu,
                    "Softmax cross-entropy over CPU logits (N, C): writes loss_rows (N,), lse (N,) "
                    "and, when given, grad (N, C) for an upstream gradient of 1 (see "
                    "cross_entropy.h).");
#ifdef LLMK_WITH_CUDA
  def_cross_entropy(m, "cross_entropy_cuda", &cross_entropy_cuda,
                    "Softmax cross-entropy over CUDA logits (N, C): writes loss_rows (N,), lse "
                    "(N,) and, when given, grad (N, C) for an upstream gradient of 1 (see "
                    "cross_entropy.h).");
#endif
}

}  // namespace llmkernels
