// Argument checks of the rms_norm entry points (see rms_norm_arguments.h).
#include "rms_norm_arguments.h"

#include <cmath>
#include <initializer_list>
#include <utility>

#include <ATen/ops/empty.h>

#include "../common/checks.h"
#include "../common/overlap_checks.h"

namespace llmkernels {
namespace {

// A (rows, D) operand with the first one's shape and device, rows readable as arrays; its dtype
// is the first one's on CUDA (one dtype per kernel), any floating one on CPU (see rms_norm.h).
void check_rows_like(const at::Tensor& t, const char* name, const at::Tensor& first) {
  LLMK_CHECK_DEVICE(t, name, first.device());
  if (first.device().type() == at::kCPU) {
    LLMK_CHECK_FLOATING(t, name);
  } else {
    LLMK_CHECK_DTYPE(t, name, first.scalar_type());
  }
  LLMK_CHECK_SHAPE(t, name, first.sizes());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name);
}

void check_first_rows(const at::Tensor& t, const char* name, at::DeviceType device_type) {
  LLMK_CHECK_DEVICE_TYPE(t, name, device_type);
  LLMK_CHECK_DIM(t, name, 2);
  LLMK_CHECK_FLOATING(t, name);
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name);
  LLMK_CHECK_ARG(t.size(1) > 0, name, "expected a last dimension of at least 1, got shape ",
                 t.sizes());
}

void check_vector(const std::optional<at::Tensor>& t, const char* name, int64_t dim,
                  const at::Device& device) {
  if (!t.has_value()) return;
  LLMK_CHECK_DEVICE(*t, name, device);
  LLMK_CHECK_DTYPE(*t, name, at::kFloat);
  LLMK_CHECK_DIM(*t, name, 1);
  LLMK_CHECK_SIZE(*t, name, 0, dim);
  LLMK_CHECK_CONTIGUOUS(*t, name);
}

// An output: the inputs' shape and dtype, no internal overlap, separate from every input.
void check_rows_output(const at::Tensor& out, const char* name, const at::Tensor& first,
                       std::initializer_list<std::pair<const at::Tensor*, const char*>> inputs) {
  check_rows_like(out, name, first);
  check_output(out, name);
  for (const auto& [t, t_name] : inputs)
    if (t != nullptr) check_disjoint(out, name, *t, t_name);
}

}  // namespace

RmsNormForwardParams rms_norm_forward_params(const at::Tensor& x,
                                             const std::optional<at::Tensor>& residual,
                                             const std::optional<at::Tensor>& weight,
                                             at::Tensor& y, const std::optional<at::Tensor>& h,
                                             at::Tensor& rstd, double eps,
                                             at::DeviceType device_type) {
  check_first_rows(x, "x", device_type);
  LLMK_CHECK_ARG(residual.has_value() == h.has_value(), residual.has_value() ? "h" : "residual",
                 "residual and h must be given together");
  const at::Tensor* r = residual.has_value() ? &*residual : nullptr;
  if (r != nullptr) check_rows_like(*r, "residual", x);
  check_vector(weight, "weight", x.size(1), x.device());
  LLMK_CHECK_ARG(std::isfinite(eps) && eps > 0.0, "eps", "expected a finite number > 0, got ",
                 eps);
  const at::Tensor* w = weight.has_value() ? &*weight : nullptr;
  check_rows_output(y, "y", x, {{&x, "x"}, {r, "residual"}, {w, "weight"}});
  if (h.has_value()) {
    check_rows_output(*h, "h", x, {{&x, "x"}, {r, "residual"}, {w, "weight"}});
    check_disjoint(*h, "h", y, "y");
  }
  check_row_output(rstd, "rstd", x.size(0), x.device());
  check_disjoint(rstd, "rstd", y, "y");
  if (h.has_value()) check_disjoint(rstd, "rstd", *h, "h");

  RmsNormForwardParams p{};
  p.x = x.data_ptr();
  p.x_stride = x.stride(0);
  if (r != nullptr) {
    p.residual = r->data_ptr();
    p.residual_stride = r->stride(0);
    p.h = h->data_ptr();
    p.h_stride = h->stride(0);
  }
  p.weight = w != nullptr ? w->data_ptr<float>() : nullptr;
  p.y = y.data_ptr();
  p.y_stride = y.stride(0);
  p.rstd = rstd.data_ptr<float>();
  p.rows = x.size(0);
  p.dim = x.size(1);
  p.eps = static_cast<float>(eps);
  return p;
}

RmsNormBackwardCall rms_norm_backward_call(const at::Tensor& grad_y,
                                           const std::optional<at::Tensor>& grad_h,
                                           const at::Tensor& inp,
                                           const std::optional<at::Tensor>& weight,
                                           const at::Tensor& rstd, at::Tensor& dx,
                                           const std::optional<at::Tensor>& dresidual,
                                           const std::optional<at::Tensor>& dweight,
                                           at::DeviceType device_type) {
  check_first_rows(inp, "inp", device_type);
  const int64_t rows = inp.size(0), dim = inp.size(1);
  check_rows_like(grad_y, "grad_y", inp);
  const at::Tensor* gh = grad_h.has_value() ? &*grad_h : nullptr;
  if (gh != nullptr) check_rows_like(*gh, "grad_h", inp);
  check_vector(weight, "weight", dim, inp.device());
  check_row_output(rstd, "rstd", rows, inp.device());
  const at::Tensor* w = weight.has_value() ? &*weight : nullptr;
  check_rows_output(dx, "dx", inp,
                    {{&grad_y, "grad_y"}, {gh, "grad_h"}, {&inp, "inp"}, {w, "weight"},
                     {&rstd, "rstd"}});
  const at::Tensor* dres = dresidual.has_value() ? &*dresidual : nullptr;
  if (dres != nullptr) {
    LLMK_CHECK_ARG(device_type == at::kCPU, "dresidual",
                   "is not supported by the CUDA kernels (they write dx only)");
    check_rows_output(*dres, "dresidual", inp,
                      {{&grad_y, "grad_y"}, {gh, "grad_h"}, {&inp, "inp"}, {w, "weight"},
                       {&rstd, "rstd"}, {&dx, "dx"}});
  }
  check_vector(dweight, "dweight", dim, inp.device());
  if (dweight.has_value()) {
    if (dres != nullptr) check_disjoint(*dweight, "dweight", *dres, "dresidual");
    check_disjoint(*dweight, "dweight", dx, "dx");
    check_disjoint(*dweight, "dweight", inp, "inp");
    check_disjoint(*dweight, "dweight", grad_y, "grad_y");
  }

  RmsNormBackwardCall call{};
  RmsNormBackwardParams& p = call.params;
  p.grad_y = grad_y.data_ptr();
  p.grad_y_stride = grad_y.stride(0);
  if (gh != nullptr) {
    p.grad_h = gh->data_ptr();
    p.grad_h_stride = gh->stride(0);
  }
  p.inp = inp.data_ptr();
  p.inp_stride = inp.stride(0);
  p.weight = w != nullptr ? w->data_ptr<float>() : nullptr;
  p.rstd = rstd.data_ptr<float>();
  p.dx = dx.data_ptr();
  p.dx_stride = dx.stride(0);
  if (dres != nullptr) {
    p.dresidual = dres->data_ptr();
    p.dresidual_stride = dres->stride(0);
  }
  p.rows = rows;
  p.dim = dim;
  p.block_rows = rms_norm_block_rows(rows);
  const int64_t blocks = (rows + p.block_rows - 1) / p.block_rows;
  if (dweight.has_value() && blocks > 0) {
    call.partial = at::empty({blocks, dim}, inp.options().dtype(at::kFloat));
    p.partial = call.partial.data_ptr<float>();
    p.dweight = dweight->data_ptr<float>();
  }
  return call;
}

}  // namespace llmkernels
