// Python bindings of the attention entry points (registered into _C by module.cpp). The CPU and
// CUDA functions take the same arguments, so one binding helper per pass serves both.
#include <torch/extension.h>

#include "attention.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

template <typename Fn>
void def_forward(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
        py::arg("scale"), py::arg("causal"), py::arg("window_left"), py::arg("window_right"),
        py::arg("softcap"), py::arg("alibi_slopes"), py::arg("key_padding_mask"),
        py::call_guard<py::gil_scoped_release>(), doc);
}

template <typename Fn>
void def_backward(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(name, fn, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("dout"),
        py::arg("lse"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("scale"),
        py::arg("causal"), py::arg("window_left"), py::arg("window_right"), py::arg("softcap"),
        py::arg("alibi_slopes"), py::arg("key_padding_mask"),
        py::call_guard<py::gil_scoped_release>(), doc);
}

}  // namespace

void register_attention(py::module_& m) {
  def_forward(m, "attention_forward_cpu", &attention_forward_cpu,
              "Flash attention forward on CPU tensors (batch, heads, seq, head_dim); writes out "
              "and lse (see attention.h).");
  def_backward(m, "attention_backward_cpu", &attention_backward_cpu,
               "Flash attention backward on CPU tensors: writes dq, dk, dv (deterministic; see "
               "attention.h).");
#ifdef LLMK_WITH_CUDA
  def_forward(m, "attention_forward_cuda", &attention_forward_cuda,
              "Flash attention forward on CUDA tensors (B, H, S, D): writes out and lse "
              "(see attention.h).");
  def_backward(m, "attention_backward_cuda", &attention_backward_cuda,
               "Flash attention backward on CUDA tensors: writes dq, dk, dv (contiguous; dk, dv "
               "summed over each GQA group), deterministically (see attention.h).");
#endif
}

}  // namespace llmkernels
