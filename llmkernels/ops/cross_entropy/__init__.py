"""Softmax cross-entropy ops: definitions, fake kernels, autograd and routing.

* ``llmkernels::cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
  z_loss, softcap, backend) -> (loss, lse)``: logits (N, C), target (N,); one pass over the logits
  with an online log-sum-exp; loss in float32 (per row for 'none'), lse (N,) float32.
* ``llmkernels::cross_entropy_backward(grad_loss, logits, target, ...) -> grad_logits``: one pass
  that recomputes each row's log-sum-exp and forms the gradient, scaled by the upstream gradient
  and the mean's denominators, straight into the single (N, C) buffer it returns.

The gradient is formed in the backward's pass rather than stored by the forward: the caller's
logits must stay unmodified, so a forward-time gradient would need its own (N, C) buffer that the
backward then had to scale into a second one; recomputing the row sums costs one extra read of the
logits, far less than a second first-touched (N, C) buffer.

Autocast: no cast (a float32 copy of bf16 logits is the memory this op avoids); the math runs in
float32 whatever the logits' dtype.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import _native, _triton, backends
from llmkernels.ops.common.checks import FLOAT_DTYPES, KERNEL_DTYPES
from llmkernels.ops.cross_entropy import reference
from llmkernels.ops.cross_entropy.arguments import check_arguments

OP = "cross_entropy"


def _cpp_probe(device_type):
    present, why = _native.cpu_probe(device_type)
    if present and not hasattr(_native.extension(), "cross_entropy_cpu"):
        return False, "llmkernels._C was built without the cross-entropy kernel"
    return present, why


def _cuda_probe(device_type):
    present, why = _native.cuda_probe(device_type)
    if present and not hasattr(_native.extension(), "cross_entropy_cuda"):
        return False, "llmkernels._C was built without the CUDA cross-entropy kernel"
    return present, why


backends.register(OP, backends.Implementation("reference", ("cpu", "cuda"), FLOAT_DTYPES, lambda d: (True, "plain PyTorch")))
backends.register(OP, backends.Implementation("cuda", ("cuda",), KERNEL_DTYPES, _cuda_probe))
backends.register(OP, backends.Implementation("cpp", ("cpu",), KERNEL_DTYPES, _cpp_probe))
backends.register(OP, backends.Implementation("triton", ("cpu", "cuda"), KERNEL_DTYPES, _triton.probe, _triton.refuses))


def _kernel(backend):
    if backend == "cpp":
        return _native.extension().cross_entropy_cpu
    if backend == "cuda":
        return _native.extension().cross_entropy_cuda
    from llmkernels.ops.cross_entropy import triton_kernels

    return triton_kernels.cross_entropy_rows


def _denominators(target, weight, ignore_index):
    """(sum of target weights, count) over non-ignored rows, as Python floats (host values)."""
    valid = target != ignore_index
    count = float(valid.sum())
    if weight is None:
        return count, count
    safe = torch.where(valid, target, torch.zeros_like(target))
    return float((weight.float()[safe] * valid).sum()), count


def _run_rows(backend, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, grad, ce_scale, z_scale):
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    rows = logits.shape[0]
    loss_rows = torch.empty(rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    class_weight = None if weight is None else weight.to(torch.float32).contiguous()
    _kernel(backend)(
        logits, target.to(torch.int64).contiguous(), class_weight, loss_rows, lse, grad, ignore_index,
        label_smoothing, z_loss, softcap or 0.0, ce_scale, z_scale,
    )
    return loss_rows, lse


@torch.library.custom_op("llmkernels::cross_entropy", mutates_args=())
def cross_entropy_op(
    logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
    label_smoothing: float, z_loss: float, softcap: Optional[float], backend: str,
) -> tuple[Tensor, Tensor]:
    check_arguments(logits, target, weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
    chosen = backends.resolve(OP, logits.device, logits.dtype, backend)
    if chosen == "reference":
        loss, lse = reference.cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap)
        return loss.float(), lse.float()
    loss_rows, lse = _run_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, None, 1.0, 1.0)
    return reduce_rows(loss_rows, lse, target, weight, ignore_index, reduction, z_loss), lse


def reduce_rows(loss_rows, lse, target, weight, ignore_index, reduction, z_loss):
    """The loss from the kernels' per-row numerators (CE part + z-loss part in each row)."""
    if reduction == "none":
        return loss_rows
    if reduction == "sum":
        return loss_rows.sum()
    # mean: the CE part over sum(w_t), the z-loss part over the row count.
    ce_denominator, count = _denominators(target, weight, ignore_index)
    z_rows = z_loss * lse.square() * (target != ignore_index) if z_loss else None
    ce_sum = loss_rows.sum() if z_rows is None else (loss_rows - z_rows).sum()
    loss = ce_sum / ce_denominator if ce_denominator else ce_sum * 0.0
    return loss if z_rows is None else loss + (z_rows.sum() / count if count else 0.0)


def gradient_scales(target, weight, ignore_index, reduction, upstream=1.0):
    """(ce_scale, z_scale) for the row kernels: the upstream gradient over each mean's denominator."""
    if reduction != "mean":
        return upstream, upstream
    ce_denominator, count = _denominators(target, weight, ignore_index)
    return (upstream / ce_denominator if ce_denominator else 0.0), (upstream / count if count else 0.0)


@cross_entropy_op.register_fake
def _(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, backend):
    check_arguments(logits, target, weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
    rows = logits.shape[0]
    loss = logits.new_empty(rows if reduction == "none" else (), dtype=torch.float32)
    return loss, logits.new_empty(rows, dtype=torch.float32)


@torch.library.custom_op("llmkernels::cross_entropy_backward", mutates_args=())
def cross_entropy_backward_op(
    grad_loss: Tensor, logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
    label_smoothing: float, z_loss: float, softcap: Optional[float], backend: str,
) -> Tensor:
    chosen = backends.resolve(OP, logits.device, logits.dtype, backend)
    if chosen == "reference":
        grad = reference.cross_entropy_grad(grad_loss, logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap)
        return grad.to(logits.dtype)
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    if reduction == "none":
        _run_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, grad, 1.0, 1.0)
        grad.mul_(grad_loss.to(grad.dtype).unsqueeze(-1))  # per-row upstream, in our own buffer
        return grad
    # The upstream scalar is read on the host (CPU here; on a GPU this is a sync still to remove).
    ce_scale, z_scale = gradient_scales(target, weight, ignore_index, reduction, float(grad_loss))
    _run_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, grad, ce_scale, z_scale)
    return grad


@cross_entropy_backward_op.register_fake
def _(grad_loss, logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, backend):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, backend = inputs
    ctx.save_for_backward(logits, target, weight)
    ctx.options = (ignore_index, reduction, label_smoothing, z_loss, softcap, backend)


def _backward(ctx, grad_loss, grad_lse):
    logits, target, weight = ctx.saved_tensors
    if ctx.needs_input_grad[2]:
        raise RuntimeError("llmkernels.cross_entropy does not compute gradients for the class weights")
    grad = torch.ops.llmkernels.cross_entropy_backward(grad_loss, logits, target, weight, *ctx.options)
    return grad, None, None, None, None, None, None, None, None


cross_entropy_op.register_autograd(_backward, setup_context=_setup)
