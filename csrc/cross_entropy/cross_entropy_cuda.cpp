// Torch glue for the cross-entropy CUDA kernel: checks, device guard, current stream, dtype
// dispatch, and the Python binding. Built only with -DLLMK_WITH_CUDA (setup.py on a CUDA torch);
// the kernel is cross_entropy_cuda.cu. Target values are not range-checked here (that would read
// device memory on the host); see cross_entropy_cuda.cu for what a bad one does.
#ifdef LLMK_WITH_CUDA

#include <torch/extension.h>

#include <ATen/MemoryOverlap.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>

#include "../common/checks.h"
#include "cross_entropy_cuda_launch.h"

namespace py = pybind11;

namespace llmkernels {
namespace {

void check_row_output(const at::Tensor& t, const char* name, int64_t rows,
                      const at::Device& dev) {
  LLMK_CHECK_DEVICE(t, name, dev);
  LLMK_CHECK_DTYPE(t, name, at::kFloat);
  LLMK_CHECK_DIM(t, name, 1);
  LLMK_CHECK_SIZE(t, name, 0, rows);
  LLMK_CHECK_CONTIGUOUS(t, name);
}

void check_disjoint(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                    const char* b_name) {
  const auto status = at::get_overlap_status(a, b);
  LLMK_CHECK_ARG(status != at::MemOverlapStatus::Partial && status != at::MemOverlapStatus::Full,
                 a_name, "overlaps ", b_name, "; expected separate memory");
}

}  // namespace

void cross_entropy_cuda(const at::Tensor& logits, const at::Tensor& target,
                        const std::optional<at::Tensor>& class_weight, at::Tensor& loss_rows,
                        at::Tensor& lse, const std::optional<at::Tensor>& grad,
                        int64_t ignore_index, double label_smoothing, double z_loss,
                        double softcap, double ce_scale, double z_scale) {
  LLMK_CHECK_DEVICE_TYPE(logits, "logits", at::kCUDA);
  LLMK_CHECK_DIM(logits, "logits", 2);
  LLMK_CHECK_FLOATING(logits, "logits");
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(logits, "logits");
  const at::Device dev = logits.device();
  const int64_t rows = logits.size(0), classes = logits.size(1);
  LLMK_CHECK_ARG(classes > 0 || rows == 0, "logits", "expected at least one class, got shape ",
                 logits.sizes());
  LLMK_CHECK_ARG(classes < INT_MAX - 16, "logits", "expected fewer than ", INT_MAX - 16,
                 " classes, got shape ", logits.sizes());

  LLMK_CHECK_DEVICE(target, "target", dev);
  LLMK_CHECK_DTYPE(target, "target", at::kLong);
  LLMK_CHECK_DIM(target, "target", 1);
  LLMK_CHECK_SIZE(target, "target", 0, rows);
  LLMK_CHECK_CONTIGUOUS(target, "target");

  if (class_weight.has_value()) {
    const at::Tensor& w = *class_weight;
    LLMK_CHECK_DEVICE(w, "class_weight", dev);
    LLMK_CHECK_DTYPE(w, "class_weight", at::kFloat);
    LLMK_CHECK_DIM(w, "class_weight", 1);
    LLMK_CHECK_SIZE(w, "class_weight", 0, classes);
    LLMK_CHECK_CONTIGUOUS(w, "class_weight");
  }

  check_row_output(loss_rows, "loss_rows", rows, dev);
  check_row_output(lse, "lse", rows, dev);
  check_disjoint(loss_rows, "loss_rows", lse, "lse");
  check_disjoint(loss_rows, "loss_rows", logits, "logits");
  check_disjoint(lse, "lse", logits, "logits");

  if (grad.has_value()) {
    const at::Tensor& g = *grad;
    LLMK_CHECK_DEVICE(g, "grad", dev);
    LLMK_CHECK_DTYPE(g, "grad", logits.scalar_type());
    LLMK_CHECK_SHAPE(g, "grad", logits.sizes());
    LLMK_CHECK_CONTIGUOUS(g, "grad");
    // grad may be logits itself (one thread reads then writes each element); nothing else may
    // overlap.
    const bool in_place = rows > 0 && classes > 0 && g.data_ptr() == logits.data_ptr() &&
                          g.strides() == logits.strides();
    if (!in_place) check_disjoint(g, "grad", logits, "logits");
    check_disjoint(g, "grad", loss_rows, "loss_rows");
    check_disjoint(g, "grad", lse, "lse");
  }
  if (rows == 0) return;

  const c10::cuda::CUDAGuard guard(dev);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();

  CrossEntropyCudaParams p;
  p.logits = logits.data_ptr();
  p.logits_stride = logits.stride(0);
  p.target = target.data_ptr<int64_t>();
  p.class_weight = class_weight.has_value() ? class_weight->data_ptr<float>() : nullptr;
  p.loss_rows = loss_rows.data_ptr<float>();
  p.lse = lse.data_ptr<float>();
  p.grad = grad.has_value() ? grad->data_ptr() : nullptr;
  p.rows = rows;
  p.classes = classes;
  p.ignore_index = ignore_index;
  p.weight_sum = static_cast<double>(classes);
  p.label_smoothing = label_smoothing;
  p.z_loss = z_loss;
  p.softcap = softcap > 0.0 ? softcap : 0.0;
  p.ce_scale = ce_scale;
  p.z_scale = z_scale;

  // sum_c w_c stays on the device (stream-ordered before the row kernel): no host sync.
  at::Tensor weight_sum;
  if (class_weight.has_value() && label_smoothing != 0.0) {
    weight_sum = at::empty({1}, logits.options().dtype(at::kDouble));
    const cudaError_t err = launch_weight_sum(p.class_weight, classes,
                                              weight_sum.data_ptr<double>(), stream);
    TORCH_CHECK(err == cudaSuccess, "llmkernels: cross-entropy weight-sum kernel launch failed: ",
                cudaGetErrorString(err));
    p.weight_sum_device = weight_sum.data_ptr<double>();
  }

  cudaError_t err = cudaSuccess;
  switch (logits.scalar_type()) {
    case at::kFloat:
      err = launch_cross_entropy<float>(p, stream);
      break;
    case at::kHalf:
      err = launch_cross_entropy<__half>(p, stream);
      break;
    case at::kBFloat16:
      err = launch_cross_entropy<__nv_bfloat16>(p, stream);
      break;
    default:
      TORCH_CHECK(false, "llmkernels: cross_entropy_cuda: unhandled dtype ", logits.scalar_type());
  }
  TORCH_CHECK(err == cudaSuccess, "llmkernels: cross-entropy CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

void register_cross_entropy_cuda(py::module_& m) {
  m.def("cross_entropy_cuda", &cross_entropy_cuda, py::arg("logits"), py::arg("target"),
        py::arg("class_weight"), py::arg("loss_rows"), py::arg("lse"), py::arg("grad"),
        py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("z_loss"),
        py::arg("softcap"), py::arg("ce_scale"), py::arg("z_scale"),
        py::call_guard<py::gil_scoped_release>(),
        "Softmax cross-entropy over CUDA logits (N, C): writes loss_rows (N,), lse (N,) and, "
        "when given, grad (N, C) for an upstream gradient of 1 (see cross_entropy.h).");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
