"""RMSNorm ops (with the pre-norm block's residual add fused): definitions, fake kernels,
autograd and routing.

Registered ops (flat arguments; ``backend`` is the requested backend name, resolved at run time
so that the backward, handed the same string, runs where the forward did):

* ``llmkernels::rms_norm(x, residual, weight, eps, backend, out_dtype=None) -> (y, h, rstd)``:
  h = x + residual, stored in the dtype x + residual would have (x and residual may differ: a
  bf16 sublayer output onto a float32 stream under autocast); an empty tensor when residual is
  None (an op output may not alias its input x). y has ``out_dtype`` (default h's dtype, or x's),
  rstd is the inverse RMS per row (float32; float64 for a float64 h), which is all the backward
  needs besides h (or x) and the weight.
* ``llmkernels::rms_norm_backward(grad_y, grad_h, inp, weight, rstd, weight_grad, backend,
  dx_dtype=None, dresidual_dtype=None) -> (dx, dresidual, dweight)``: grad_y in y's dtype,
  grad_h and inp in h's; dx (dtype ``dx_dtype``, default inp's) is the gradient of x and of
  residual alike; dresidual is the same gradient in ``dresidual_dtype``, written in the same pass
  when residual's dtype differs from x's (else empty); dweight (float32, empty unless
  ``weight_grad``) is reduced deterministically: fixed blocks of rows, per-block partial sums,
  summed in a fixed order.

Mixed dtypes run natively (one pass, no cast kernels) on reference, cpp and triton. A backend
without them (cuda) gets its inputs cast to h's dtype and its outputs cast back, which gives the
same values whenever y (and grad_y) is not wider than h; otherwise the op runs the reference.

Autocast: the ops register no autocast kernel: under autocast they take x and residual in
whatever dtypes they arrive and run in float32; the weight may keep its own dtype (a float32
parameter beside bf16 activations), and its gradient has it. ``nn.RMSNorm`` asks for y in the
autocast dtype where projections read it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.layout import kernel_rows
from llmkernels.ops.common.registration import KernelFamily, register_backends
from llmkernels.ops.rms_norm import reference
from llmkernels.ops.rms_norm.arguments import check_all, check_dtype_arg, check_like_x

OPS = ("rms_norm",)
KERNELS = KernelFamily(
    "rms_norm", ("rms_norm_forward", "rms_norm_backward"), "llmkernels.ops.rms_norm.triton_kernels"
)
# Backends whose kernels take every operand in its own dtype.
NATIVE_MIXED = frozenset({"reference", "cpp", "triton"})

for _op in OPS:
    register_backends(_op, KERNELS)


def _rows(t: Optional[Tensor]) -> Optional[Tensor]:
    """t as the kernels read it: (rows, D) with a dense last dimension (a view where possible)."""
    return None if t is None else kernel_rows(t)


def _kernel_weight(weight: Optional[Tensor]) -> Optional[Tensor]:
    return None if weight is None else weight.to(torch.float32).contiguous()


def _resolve(device: torch.device, dtypes, backend: str) -> str:
    """The backend for every dtype the call touches: an explicit one must serve each of them (else
    its error names the one it lacks); ``auto`` falls back to the reference where they disagree."""
    chosen = {backends.resolve("rms_norm", device, d, backend) for d in dict.fromkeys(dtypes)}
    return chosen.pop() if len(chosen) == 1 else "reference"


def _plan(chosen: str, wide: torch.dtype, dtypes) -> str:
    """How ``chosen`` runs a call: "native" (one kernel, each operand in its dtype), "cast" (a
    backend without mixed dtypes: operands cast to ``wide``, h's dtype, which the kernel runs in,
    outputs cast back: exact while no dtype of the call is wider) or "reference"."""
    if chosen == "reference":
        return chosen
    if chosen in NATIVE_MIXED or len(set(dtypes)) == 1:
        return "native"
    return "cast" if all(torch.promote_types(wide, d) == wide for d in dtypes) else "reference"


def _forward_dtypes(x, residual, out_dtype):
    stored = reference.h_dtype(x, residual)
    return stored, out_dtype or stored


def _outputs_like(x: Tensor, residual: Optional[Tensor], out_dtype) -> tuple[Tensor, Tensor, Tensor]:
    stored, y_dtype = _forward_dtypes(x, residual, out_dtype)
    y = torch.empty(x.shape, dtype=y_dtype, device=x.device)
    h = torch.empty(x.shape if residual is not None else (0,), dtype=stored, device=x.device)
    rstd = torch.empty(x.shape[:-1], dtype=reference.compute_dtype(stored), device=x.device)
    return y, h, rstd


# --- forward ------------------------------------------------------------------------------


@torch.library.custom_op("llmkernels::rms_norm", mutates_args=())
def rms_norm_op(
    x: Tensor, residual: Optional[Tensor], weight: Optional[Tensor], eps: float, backend: str,
    out_dtype: Optional[torch.dtype] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    check_all(x, residual, weight, eps, out_dtype)
    stored, y_dtype = _forward_dtypes(x, residual, out_dtype)
    dtypes = (x.dtype, *(() if residual is None else (residual.dtype,)), stored, y_dtype)
    chosen = _resolve(x.device, dtypes, backend)
    plan = _plan(chosen, stored, dtypes)
    if plan == "reference":
        y, h, rstd = reference.forward(x, residual, weight, eps, out_dtype)
        return y, (h if h is not None else x.new_empty((0,), dtype=stored)), rstd
    y, h, rstd = _outputs_like(x, residual, out_dtype)
    if x.numel():
        cast = plan == "cast"
        y_k = torch.empty(x.shape, dtype=stored, device=x.device) if cast and y_dtype != stored else y
        KERNELS.kernel(chosen, "rms_norm_forward")(
            _rows(x.to(stored) if cast else x), _rows(residual.to(stored) if cast and residual is not None else residual),
            _kernel_weight(weight), y_k.view(-1, x.shape[-1]),
            None if residual is None else h.view(-1, x.shape[-1]), rstd.view(-1), float(eps),
        )
        if y_k is not y:
            y.copy_(y_k)
    return y, h, rstd


@rms_norm_op.register_fake
def _(x, residual, weight, eps, backend, out_dtype=None):
    check_all(x, residual, weight, eps, out_dtype)
    return _outputs_like(x, residual, out_dtype)


def _setup_forward(ctx, inputs, output):
    x, residual, weight, eps, backend = inputs[:5]
    _, h, rstd = output
    # Only what the backward needs: the normalised input (h, an output anyway, or x), the weight
    # and the per-row rstd; and the dtypes the input gradients must have.
    ctx.save_for_backward(h if residual is not None else x, weight, rstd)
    ctx.has_residual, ctx.backend = residual is not None, backend
    ctx.dx_dtype = x.dtype
    ctx.dresidual_dtype = residual.dtype if residual is not None and residual.dtype != x.dtype else None
    ctx.mark_non_differentiable(rstd)
    ctx.set_materialize_grads(False)


def _forward_backward(ctx, grad_y, grad_h, _grad_rstd):
    inp, weight, rstd = ctx.saved_tensors
    weight_grad = weight is not None and ctx.needs_input_grad[2]
    grad_h = grad_h if ctx.has_residual else None
    mixed = ctx.dresidual_dtype is not None
    if grad_y is None:  # only h reached the loss: it passes its gradient straight through
        dh = grad_h if grad_h is not None else torch.zeros_like(inp)
        dx, dresidual = dh.to(ctx.dx_dtype), (dh.to(ctx.dresidual_dtype) if mixed else None)
        dweight = torch.zeros_like(weight) if weight_grad else None
    else:
        dx, dresidual, dweight = torch.ops.llmkernels.rms_norm_backward(
            grad_y, grad_h, inp, weight, rstd, weight_grad, ctx.backend, ctx.dx_dtype, ctx.dresidual_dtype
        )
        dweight = dweight.to(weight.dtype) if weight_grad else None
    if not mixed:  # residual's gradient is x's (or there is no residual)
        dresidual = dx if ctx.has_residual else None
    return dx, dresidual, dweight, None, None, None


rms_norm_op.register_autograd(_forward_backward, setup_context=_setup_forward)


# --- backward -----------------------------------------------------------------------------


def _check_backward(grad_y, grad_h, inp, weight, rstd, dx_dtype, dresidual_dtype):
    check_all(inp, None, weight, 1.0)
    check_like_x("grad_y", grad_y, inp, same_dtype=False, x_name="inp")
    if grad_h is not None:
        check_like_x("grad_h", grad_h, inp, x_name="inp")
    if rstd.shape != inp.shape[:-1] or rstd.dtype != reference.compute_dtype(inp.dtype):
        raise ValueError(
            f"rstd must have shape {tuple(inp.shape[:-1])} and dtype {reference.compute_dtype(inp.dtype)}; "
            f"got {tuple(rstd.shape)} {rstd.dtype}"
        )
    check_dtype_arg("dx_dtype", dx_dtype)
    check_dtype_arg("dresidual_dtype", dresidual_dtype)


def _backward_outputs(inp: Tensor, weight_grad: bool, dx_dtype, dresidual_dtype):
    dx = torch.empty(inp.shape, dtype=dx_dtype or inp.dtype, device=inp.device)
    shape = inp.shape if dresidual_dtype is not None else (0,)
    dresidual = torch.empty(shape, dtype=dresidual_dtype or inp.dtype, device=inp.device)
    size = inp.shape[-1] if weight_grad else 0
    dweight = torch.empty((size,), dtype=reference.compute_dtype(inp.dtype), device=inp.device)
    return dx, dresidual, dweight


@torch.library.custom_op("llmkernels::rms_norm_backward", mutates_args=())
def rms_norm_backward_op(
    grad_y: Tensor, grad_h: Optional[Tensor], inp: Tensor, weight: Optional[Tensor], rstd: Tensor,
    weight_grad: bool, backend: str, dx_dtype: Optional[torch.dtype] = None,
    dresidual_dtype: Optional[torch.dtype] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    _check_backward(grad_y, grad_h, inp, weight, rstd, dx_dtype, dresidual_dtype)
    weight_grad = weight_grad and weight is not None
    dtypes = tuple(d for d in (inp.dtype, grad_y.dtype, dx_dtype, dresidual_dtype) if d is not None)
    chosen = _resolve(inp.device, dtypes, backend)
    plan = _plan(chosen, inp.dtype, dtypes)
    if plan == "reference":
        dx, dresidual, dweight = reference.backward(grad_y, grad_h, inp, weight, rstd, weight_grad, dx_dtype, dresidual_dtype)
        # The outputs the reference leaves out (None) are the empty ones _backward_outputs gives.
        if dresidual is None:
            dresidual = inp.new_empty((0,))
        if dweight is None:
            dweight = inp.new_empty((0,), dtype=reference.compute_dtype(inp.dtype))
        return dx, dresidual, dweight
    dx, dresidual, dweight = _backward_outputs(inp, weight_grad, dx_dtype, dresidual_dtype)
    if inp.numel():
        cast = plan == "cast"
        dx_k = torch.empty(inp.shape, dtype=inp.dtype, device=inp.device) if cast and dx.dtype != inp.dtype else dx
        # Kernels without mixed dtypes write dx alone; dresidual is then a copy of it.
        dres_k = dresidual if dresidual_dtype is not None and chosen in NATIVE_MIXED else None
        KERNELS.kernel(chosen, "rms_norm_backward")(
            _rows(grad_y.to(inp.dtype) if cast else grad_y), _rows(grad_h), _rows(inp), _kernel_weight(weight),
            rstd.contiguous().view(-1), dx_k.view(-1, inp.shape[-1]),
            None if dres_k is None else dres_k.view(-1, inp.shape[-1]), dweight if weight_grad else None,
        )
        if dx_k is not dx:
            dx.copy_(dx_k)
        if dresidual_dtype is not None and dres_k is None:
            dresidual.copy_(dx_k)
    elif weight_grad:
        dweight.zero_()
    return dx, dresidual, dweight


@rms_norm_backward_op.register_fake
def _(grad_y, grad_h, inp, weight, rstd, weight_grad, backend, dx_dtype=None, dresidual_dtype=None):
    _check_backward(grad_y, grad_h, inp, weight, rstd, dx_dtype, dresidual_dtype)
    return _backward_outputs(inp, weight_grad and weight is not None, dx_dtype, dresidual_dtype)
