// The swiglu argument checks (see swiglu_arguments.h).
#include "swiglu_arguments.h"

#include "../common/checks.h"
#include "../common/overlap_checks.h"

namespace llmkernels {
namespace {

// A (rows, H) operand like gate: same device, dtype and shape, rows read as plain arrays.
void check_rows(const at::Tensor& t, const char* name, const at::Tensor& gate) {
  LLMK_CHECK_DIM(t, name, 2);
  LLMK_CHECK_DEVICE(t, name, gate.device());
  LLMK_CHECK_DTYPE(t, name, gate.scalar_type());
  LLMK_CHECK_SHAPE(t, name, gate.sizes());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name);
}

void check_gate(const at::Tensor& gate, at::DeviceType device_type) {
  LLMK_CHECK_DEVICE_TYPE(gate, "gate", device_type);
  LLMK_CHECK_FLOATING(gate, "gate");
  check_rows(gate, "gate", gate);
}

// An output: no element written twice, no input read after it was overwritten.
void check_written(const at::Tensor& out, const char* name, const at::Tensor& gate,
                   const at::Tensor& up) {
  check_output(out, name);
  check_disjoint(out, name, gate, "gate");
  check_disjoint(out, name, up, "up");
}

SwigluRows inputs_of(const at::Tensor& gate, const at::Tensor& up, int64_t activation) {
  LLMK_CHECK_ARG(activation == kSilu || activation == kGelu || activation == kGeluTanh, "activation",
                 "expected 0 (silu), 1 (gelu) or 2 (gelu, tanh approximation), got ", activation);
  SwigluRows t;
  t.activation = static_cast<int32_t>(activation);
  t.gate = gate.data_ptr();
  t.up = up.data_ptr();
  t.gate_stride = gate.stride(0);
  t.up_stride = up.stride(0);
  t.rows = gate.size(0);
  t.cols = gate.size(1);
  return t;
}

}  // namespace

SwigluRows check_swiglu_forward_arguments(const at::Tensor& gate, const at::Tensor& up,
                                          const at::Tensor& out, int64_t activation,
                                          at::DeviceType device_type) {
  check_gate(gate, device_type);
  check_rows(up, "up", gate);
  check_rows(out, "out", gate);
  check_written(out, "out", gate, up);
  SwigluRows t = inputs_of(gate, up, activation);
  t.out = out.data_ptr();
  t.out_stride = out.stride(0);
  return t;
}

SwigluRows check_swiglu_backward_arguments(const at::Tensor& grad, const at::Tensor& gate,
                                           const at::Tensor& up, const at::Tensor& grad_gate,
                                           const at::Tensor& grad_up, int64_t activation,
                                           at::DeviceType device_type) {
  check_gate(gate, device_type);
  check_rows(up, "up", gate);
  check_rows(grad, "grad", gate);
  check_rows(grad_gate, "grad_gate", gate);
  check_rows(grad_up, "grad_up", gate);
  check_written(grad_gate, "grad_gate", gate, up);
  check_written(grad_up, "grad_up", gate, up);
  check_disjoint(grad_gate, "grad_gate", grad, "grad");
  check_disjoint(grad_up, "grad_up", grad, "grad");
  check_disjoint(grad_gate, "grad_gate", grad_up, "grad_up");
  SwigluRows t = inputs_of(gate, up, activation);
  t.grad = grad.data_ptr();
  t.grad_stride = grad.stride(0);
  t.grad_gate = grad_gate.data_ptr();
  t.grad_gate_stride = grad_gate.stride(0);
  t.grad_up = grad_up.data_ptr();
  t.grad_up_stride = grad_up.stride(0);
  return t;
}

}  // namespace llmkernels
