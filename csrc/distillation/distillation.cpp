// Python bindings of the distillation entry points (registered into _C by module.cpp).
#include <torch/extension.h>

#include "distillation.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

template <typename Fn>
void def_distillation_rows(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("student"), py::arg("teacher"), py::arg("target"), py::arg("soft"),
        py::arg("hard"), py::arg("grad"), py::arg("temperature"), py::arg("beta"),
        py::arg("hard_weight"), py::arg("ignore_index"), py::arg("scale_by_temperature"),
        py::arg("softcap"), py::arg("grad_scale"), py::call_guard<py::gil_scoped_release>(), doc);
}

template <typename Fn>
void def_topk_rows(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("student"), py::arg("ids"), py::arg("logprobs"), py::arg("target"),
        py::arg("soft"), py::arg("hard"), py::arg("grad"), py::arg("temperature"), py::arg("beta"),
        py::arg("hard_weight"), py::arg("ignore_index"), py::arg("scale_by_temperature"),
        py::arg("softcap"), py::arg("grad_scale"), py::call_guard<py::gil_scoped_release>(), doc);
}

template <typename Fn>
void def_topk_logprobs(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("logits"), py::arg("k"), py::arg("temperature"), py::arg("softcap"),
        py::arg("ids"), py::arg("logprobs"), py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace

void register_distillation(py::module_& m) {
  def_distillation_rows(m, "distillation_rows_cpu", &distillation_rows_cpu,
                        "Distillation rows over CPU logits: writes soft (N,), hard (N,) and, when "
                        "given, the student's grad (N, Vs) (see distillation.h).");
  def_topk_rows(m, "topk_distillation_rows_cpu", &topk_distillation_rows_cpu,
                "Top-k distillation rows over CPU logits against a stored teacher (see distillation.h).");
  def_topk_logprobs(m, "topk_logprobs_cpu", &topk_logprobs_cpu,
                    "The k most likely columns of CPU logits: ids (N, k) int32, logprobs (N, k) "
                    "float32, written in place (see distillation.h).");
#ifdef LLMK_WITH_CUDA
  def_distillation_rows(m, "distillation_rows_cuda", &distillation_rows_cuda,
                        "Distillation rows over CUDA logits: writes soft (N,), hard (N,) and, when "
                        "given, the student's grad (N, Vs) (see distillation.h).");
  def_topk_rows(m, "topk_distillation_rows_cuda", &topk_distillation_rows_cuda,
                "Top-k distillation rows over CUDA logits against a stored teacher (see distillation.h).");
  def_topk_logprobs(m, "topk_logprobs_cuda", &topk_logprobs_cuda,
                    "The k most likely columns of CUDA logits (see distillation.h).");
#endif
}

}  // namespace llmkernels
