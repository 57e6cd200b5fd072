"""Gradients formed in the forward (mean/sum losses with an upstream of 1): the one hand-off that
the fused-loss families (linear cross-entropy, distillation, linear distillation) share.

The forward keeps its gradients as plain ``ctx.formed`` attributes, not saved tensors: the backward
takes them once and drops the reference, so autograd can adopt them as ``.grad`` without a copy.
"""

from __future__ import annotations

from torch import Tensor

from llmkernels.ops.common.checks import can_check_values


def upstream_is_one(grad_loss: Tensor) -> bool:
    """Whether the formed gradients are the answer as they are. A host read, so only for real CPU
    tensors (never while tracing, never a GPU sync); elsewhere the backward op scales them."""
    return can_check_values(grad_loss) and grad_loss.numel() == 1 and bool(grad_loss == 1)


def take_formed(ctx, op_name: str):
    """The forward's formed gradients, handed out once (a second backward through the graph would
    find them given away)."""
    if ctx.formed is None:
        raise RuntimeError(f"{op_name}: backward through the same graph twice is not supported")
    formed, ctx.formed = ctx.formed, None
    return formed
