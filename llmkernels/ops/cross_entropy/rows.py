"""Cross-entropy over the rows of a logits matrix, on a chosen backend: the machinery that the
``cross_entropy`` op and ``linear_cross_entropy`` (chunk by chunk) share.

The row kernels write, per row, the loss numerator (CE part + z-loss part) and the log-sum-exp,
and, when a gradient buffer is given, d(loss)/d(logits) scaled by ``ce_scale`` (CE part) and
``z_scale`` (z-loss part); ``gradient_scales`` turns a reduction and an upstream gradient into
those scales, ``reduce_rows`` the row numerators into the loss.
"""

from __future__ import annotations

import torch

from llmkernels.ops.common.layout import kernel_input
from llmkernels.ops.common.registration import KernelFamily
from llmkernels.ops.cross_entropy import reference

KERNELS = KernelFamily("cross-entropy", ("cross_entropy",), "llmkernels.ops.cross_entropy.triton_kernels")


def compute_rows(backend, logits, target, weight, ignore_index, label_smoothing, z_loss, softcap,
                 grad=None, ce_scale=1.0, z_scale=1.0):
    """(loss_rows, lse), float32 (N,), for logits (N, C) on ``backend``; when ``grad`` (N, C) is
    given, the scaled gradient is written into it (it may be the logits themselves: each element
    is read before it is written)."""
    if backend == "reference":
        loss_rows, lse, row_grad = reference.rows_with_gradient(
            logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, ce_scale, z_scale
        )
        if grad is not None:
            grad.copy_(row_grad)
        return loss_rows, lse
    rows = logits.shape[0]
    loss_rows = torch.empty(rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    class_weight = None if weight is None else weight.to(torch.float32).contiguous()
    KERNELS.kernel(backend, "cross_entropy")(
        kernel_input(logits), target.to(torch.int64).contiguous(), class_weight, loss_rows, lse, grad, ignore_index,
        label_smoothing, z_loss, softcap or 0.0, ce_scale, z_scale,
    )
    return loss_rows, lse


def denominators(target, weight, ignore_index):
    """(sum of target weights, count) over non-ignored rows, as 0-dim float32 tensors on the
    target's device: the mean's denominators never leave the device (no host sync per step)."""
    valid = target != ignore_index
    count = valid.sum(dtype=torch.float32)
    if weight is None:
        return count, count
    safe = torch.where(valid, target, torch.zeros_like(target))
    return (weight.float()[safe] * valid).sum(), count


def reduce_rows(loss_rows, lse, target, weight, ignore_index, reduction, z_loss):
    """The loss from the kernels' per-row numerators (CE part + z-loss part in each row)."""
    if reduction == "none":
        return loss_rows
    if reduction == "sum":
        return loss_rows.sum()
    # mean: the CE part over sum(w_t), the z-loss part over the row count.
    ce_denominator, count = denominators(target, weight, ignore_index)
    z_rows = z_loss * lse.square() * (target != ignore_index) if z_loss else None
    ce_sum = loss_rows.sum() if z_rows is None else (loss_rows - z_rows).sum()
    loss = reference.safe_divide(ce_sum, ce_denominator)
    return loss if z_rows is None else loss + reference.safe_divide(z_rows.sum(), count)


def gradient_scales(target, weight, ignore_index, reduction, upstream=1.0):
    """(ce_scale, z_scale) for the row kernels, as Python floats: the upstream gradient over each
    mean's denominator. A host read (free on a CPU; a sync on a GPU, so the forwards that form
    gradients use ``device_gradient_scale`` there)."""
    if reduction != "mean":
        return upstream, upstream
    ce_denominator, count = (float(d) for d in denominators(target, weight, ignore_index))
    return (upstream / ce_denominator if ce_denominator else 0.0), (upstream / count if count else 0.0)


def device_gradient_scale(target, weight, ignore_index, z_loss):
    """For a 'mean' gradient formed without a host read: the 0-dim device factor that the row
    kernels' gradient for unit scales (1, 1) is multiplied by afterwards (the gradient is linear in
    it). None when the CE and z-loss parts need different factors (class weights and a z-loss:
    their ratio is a host value), where ``gradient_scales`` must be used."""
    if weight is not None and z_loss:
        return None
    ce_denominator, _ = denominators(target, weight, ignore_index)
    nonzero = ce_denominator != 0
    return torch.where(nonzero, 1.0 / torch.where(nonzero, ce_denominator, 1.0), 0.0)
