"""RMSNorm ops (with the pre-norm block's residual add fused): definitions, fake kernels,
autograd and routing.

Registered ops (flat arguments; ``backend`` is the requested backend name, resolved at run time
so that the backward, handed the same string, runs where the forward did):

* ``llmkernels::rms_norm(x, residual, weight, eps, backend) -> (y, h, rstd)``: h = x + residual
  (an empty tensor when residual is None: an op output may not alias its input x), rstd the
  inverse RMS per row (float32; float64 for float64 inputs), which is all the backward needs
  besides h (or x) and the weight.
* ``llmkernels::rms_norm_backward(grad_y, grad_h, inp, weight, rstd, weight_grad, backend)
  -> (dh, dweight)``: dh is the gradient of x and of residual alike; dweight (float32, empty
  unless ``weight_grad``) is reduced deterministically: fixed blocks of rows, per-block partial
  sums, summed in a fixed order.

Autocast: the ops are dtype-preserving and register no autocast kernel: under autocast they take
x (and residual) in whatever dtype they arrive, run in float32 and return x's dtype; the weight
may keep its own dtype (a float32 parameter beside bf16 activations), and its gradient has it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.layout import kernel_rows
from llmkernels.ops.common.registration import KernelFamily, register_backends
from llmkernels.ops.rms_norm import reference
from llmkernels.ops.rms_norm.arguments import check_all, check_like_x

OPS = ("rms_norm",)
KERNELS = KernelFamily(
    "rms_norm", ("rms_norm_forward", "rms_norm_backward"), "llmkernels.ops.rms_norm.triton_kernels"
)

for _op in OPS:
    register_backends(_op, KERNELS)


def _rows(t: Optional[Tensor]) -> Optional[Tensor]:
    """t as the kernels read it: (rows, D) with a dense last dimension (a view where possible)."""
    return None if t is None else kernel_rows(t)


def _kernel_weight(weight: Optional[Tensor]) -> Optional[Tensor]:
    return None if weight is None else weight.to(torch.float32).contiguous()


def _rstd_like(x: Tensor) -> Tensor:
    return torch.empty(x.shape[:-1], dtype=reference.compute_dtype(x.dtype), device=x.device)


def _outputs_like(x: Tensor, residual: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    h = torch.empty(x.shape if residual is not None else (0,), dtype=x.dtype, device=x.device)
    return y, h, _rstd_like(x)


# --- forward ------------------------------------------------------------------------------


@torch.library.custom_op("llmkernels::rms_norm", mutates_args=())
def rms_norm_op(
    x: Tensor, residual: Optional[Tensor], weight: Optional[Tensor], eps: float, backend: str
) -> tuple[Tensor, Tensor, Tensor]:
    check_all(x, residual, weight, eps)
    chosen = backends.resolve("rms_norm", x.device, x.dtype, backend)
    if chosen == "reference":
        y, h, rstd = reference.forward(x, residual, weight, eps)
        return y, (h if h is not None else x.new_empty((0,))), rstd
    y, h, rstd = _outputs_like(x, residual)
    if x.numel():
        KERNELS.kernel(chosen, "rms_norm_forward")(
            _rows(x), _rows(residual), _kernel_weight(weight), y.view(-1, x.shape[-1]),
            None if residual is None else h.view(-1, x.shape[-1]), rstd.view(-1), float(eps),
        )
    return y, h, rstd


@rms_norm_op.register_fake
def _(x, residual, weight, eps, backend):
    check_all(x, residual, weight, eps)
    return _outputs_like(x, residual)


def _setup_forward(ctx, inputs, output):
    x, residual, weight, eps, backend = inputs
    _, h, rstd = output
    # Only what the backward needs: the normalised input (h, an output anyway, or x), the weight
    # and the per-row rstd.
    ctx.save_for_backward(h if residual is not None else x, weight, rstd)
    ctx.has_residual, ctx.backend = residual is not None, backend
    ctx.mark_non_differentiable(rstd)
    ctx.set_materialize_grads(False)


def _forward_backward(ctx, grad_y, grad_h, _grad_rstd):
    inp, weight, rstd = ctx.saved_tensors
    weight_grad = weight is not None and ctx.needs_input_grad[2]
    grad_h = grad_h if ctx.has_residual else None
    if grad_y is None:  # only h reached the loss: it passes its gradient straight through
        dh = grad_h if grad_h is not None else torch.zeros_like(inp)
        dweight = torch.zeros_like(weight) if weight_grad else None
    else:
        dh, dweight = torch.ops.llmkernels.rms_norm_backward(
            grad_y, grad_h, inp, weight, rstd, weight_grad, ctx.backend
        )
        dweight = dweight.to(weight.dtype) if weight_grad else None
    return dh, (dh if ctx.has_residual else None), dweight, None, None


rms_norm_op.register_autograd(_forward_backward, setup_context=_setup_forward)


# --- backward -----------------------------------------------------------------------------


def _check_backward(grad_y, grad_h, inp, weight, rstd):
    check_all(inp, None, weight, 1.0)
    check_like_x("grad_y", grad_y, inp)
    if grad_h is not None:
        check_like_x("grad_h", grad_h, inp)
    if rstd.shape != inp.shape[:-1] or rstd.dtype != reference.compute_dtype(inp.dtype):
        raise ValueError(
            f"rstd must have shape {tuple(inp.shape[:-1])} and dtype {reference.compute_dtype(inp.dtype)}; "
            f"got {tuple(rstd.shape)} {rstd.dtype}"
        )


def _dweight_like(inp: Tensor, weight_grad: bool) -> Tensor:
    size = inp.shape[-1] if weight_grad else 0
    return torch.empty((size,), dtype=reference.compute_dtype(inp.dtype), device=inp.device)


@torch.library.custom_op("llmkernels::rms_norm_backward", mutates_args=())
def rms_norm_backward_op(
    grad_y: Tensor, grad_h: Optional[Tensor], inp: Tensor, weight: Optional[Tensor], rstd: Tensor,
    weight_grad: bool, backend: str,
) -> tuple[Tensor, Tensor]:
    _check_backward(grad_y, grad_h, inp, weight, rstd)
    weight_grad = weight_grad and weight is not None
    chosen = backends.resolve("rms_norm", inp.device, inp.dtype, backend)
    if chosen == "reference":
        dh, dweight = reference.backward(grad_y, grad_h, inp, weight, rstd, weight_grad)
        return dh, dweight if dweight is not None else _dweight_like(inp, False)
    dh = torch.empty(inp.shape, dtype=inp.dtype, device=inp.device)
    dweight = _dweight_like(inp, weight_grad)
    if inp.numel():
        KERNELS.kernel(chosen, "rms_norm_backward")(
            _rows(grad_y), _rows(grad_h), _rows(inp), _kernel_weight(weight), rstd.contiguous().view(-1),
            dh.view(-1, inp.shape[-1]), dweight if weight_grad else None,
        )
    elif weight_grad:
        dweight.zero_()
    return dh, dweight


@rms_norm_backward_op.register_fake
def _(grad_y, grad_h, inp, weight, rstd, weight_grad, backend):
    _check_backward(grad_y, grad_h, inp, weight, rstd)
    dweight = _dweight_like(inp, weight_grad and weight is not None)
    return torch.empty(inp.shape, dtype=inp.dtype, device=inp.device), dweight
