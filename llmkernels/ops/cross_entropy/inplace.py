"""Cross-entropy that writes d(loss)/d(logits) over the logits in the forward (opt-in,
``cross_entropy(..., inplace_backward=True)``).

* ``llmkernels::cross_entropy_inplace(logits!, target, ...) -> (loss, lse)``: one pass per row
  forms the loss and the gradient for an upstream of 1, written over the logits.

What it saves: the default path leaves the logits untouched, so its backward reads them again
and writes the gradient into a fresh (N, C) buffer, whose first touch is the largest cost of a
CPU step. Here the forward reads and writes each row once, in memory already resident, and the
backward returns that buffer as the gradient (scaled in place when the upstream is not 1): one
pass over the logits instead of three, no second (N, C) buffer. The price: the logits hold the
gradient after the call, so nothing else may read them afterwards. Autograd refuses a backward
through an op that saved them (its version check); the caller must not read them either.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.formed_gradients import upstream_is_one
from llmkernels.ops.cross_entropy import fake_loss_and_lse
from llmkernels.ops.cross_entropy.arguments import check_arguments
from llmkernels.ops.cross_entropy.rows import compute_rows, gradient_scales, reduce_rows

OP = "cross_entropy"


@torch.library.custom_op("llmkernels::cross_entropy_inplace", mutates_args=("logits",))
def cross_entropy_inplace_op(
    logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
    label_smoothing: float, z_loss: float, softcap: Optional[float], backend: str,
) -> tuple[Tensor, Tensor]:
    check_arguments(logits, target, weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
    if logits.stride(-1) != 1:
        raise ValueError(f"input must have a dense last dimension to be overwritten in place; got strides {logits.stride()}")
    chosen = backends.resolve(OP, logits.device, logits.dtype, backend)
    # The mean's denominators scale the gradient now (a host read: free on a CPU, a sync on a GPU).
    ce_scale, z_scale = gradient_scales(target, weight, ignore_index, reduction)
    loss_rows, lse = compute_rows(chosen, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap,
                                  logits, ce_scale, z_scale)
    return reduce_rows(loss_rows, lse, target, weight, ignore_index, reduction, z_loss), lse


cross_entropy_inplace_op.register_fake(fake_loss_and_lse)


class InplaceCrossEntropy(torch.autograd.Function):
    """Autograd around the mutating op: the logits, now the gradient, are handed back as it."""

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, backend):
        # Written through a detached alias: the same memory and version counter (so an op that saved
        # the logits still refuses its backward), but no in-place record on the graph, which would
        # rebase a view's history (logits are often a view of the projection's output).
        gradient = logits.detach()
        loss, lse = torch.ops.llmkernels.cross_entropy_inplace(
            gradient, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, backend
        )
        ctx.save_for_backward(gradient)  # saved after the write: its version is the gradient's
        ctx.reduction = reduction
        ctx.mark_non_differentiable(lse)
        return loss, lse

    @staticmethod
    def backward(ctx, grad_loss, grad_lse):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            grad.mul_(grad_loss.to(grad.dtype).unsqueeze(-1))
        elif not upstream_is_one(grad_loss):
            grad.mul_(grad_loss.to(grad.dtype))
        return grad, None, None, None, None, None, None, None, None
