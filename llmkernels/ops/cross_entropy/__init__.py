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

from llmkernels import backends
from llmkernels.ops.common.registration import register_backends
from llmkernels.ops.cross_entropy import reference
from llmkernels.ops.cross_entropy.arguments import check_arguments
from llmkernels.ops.cross_entropy.rows import KERNELS, compute_rows, gradient_scales, reduce_rows

OP = "cross_entropy"

register_backends(OP, KERNELS)


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
    loss_rows, lse = compute_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap)
    return reduce_rows(loss_rows, lse, target, weight, ignore_index, reduction, z_loss), lse


@cross_entropy_op.register_fake
def fake_loss_and_lse(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, backend):
    """Checked (loss, lse) shapes: the fake of cross_entropy and of cross_entropy_inplace."""
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
        compute_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, grad)
        grad.mul_(grad_loss.to(grad.dtype).unsqueeze(-1))  # per-row upstream, in our own buffer
        return grad
    # The upstream scalar is read on the host: free on a CPU, a host sync on a GPU.
    ce_scale, z_scale = gradient_scales(target, weight, ignore_index, reduction, float(grad_loss))
    compute_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, grad, ce_scale, z_scale)
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
