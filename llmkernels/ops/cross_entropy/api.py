"""Public cross-entropy function, with ``F.cross_entropy``'s signature plus z_loss and softcap."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor_types
from llmkernels.ops.cross_entropy.inplace import InplaceCrossEntropy


def _flatten(input, target):
    """(N, C) logits and (N,) targets from torch's accepted shapes, and how to shape per-row results."""
    if input.dim() == 1:  # (C,) with a scalar target
        return input.unsqueeze(0), target.reshape(1), target.shape
    if input.dim() == 2:
        return input, target, target.shape
    if input.dim() < 1:
        raise ValueError(f"input must have at least 1 dimension (C,) or (N, C, ...); got shape {tuple(input.shape)}")
    # (N, C, d1, ...): classes last, then rows.
    if target.dim() != input.dim() - 1 or target.shape[0] != input.shape[0] or target.shape[1:] != input.shape[2:]:
        raise ValueError(
            f"target must have shape {(input.shape[0], *input.shape[2:])} for input {tuple(input.shape)}; "
            f"got {tuple(target.shape)}"
        )
    classes = input.shape[1]
    return input.movedim(1, -1).reshape(-1, classes), target.reshape(-1), target.shape


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
    z_loss=0.0, softcap=None, return_lse=False, inplace_backward=False,
):
    """``F.cross_entropy`` for class-index targets, in one pass over the logits.

    Adds ``z_loss`` (z_loss * lse^2 per non-ignored row; 'mean' divides it by the number of such
    rows) and ``softcap`` (softcap * tanh(logit / softcap) first; None or 0 is off). A 'mean' over
    zero non-ignored rows is 0. The loss comes back in the input's dtype (float32 under autocast,
    as torch's does); with ``return_lse`` also the log-sum-exp per row (float32, no gradient),
    shaped like the target.

    ``inplace_backward=True`` trades the logits for speed: the forward writes d(loss)/d(logits)
    over them and the backward hands that buffer back (ops/cross_entropy/inplace.py). Default
    (False): the logits are left as they were; the backward reads them again and writes a fresh
    (N, C) gradient, which on a CPU costs about as much as the rest of the step (its first touch).
    In place, the caller must not use the logits after the call (they hold the gradient), nor may
    any other op have saved them for its backward (autograd then refuses with its version check).
    It applies when the logits are computed (not a leaf, whose values would be lost) in grad mode,
    with a dense last dimension (after (N, C, d1, ...) inputs are flattened, which copies them);
    otherwise the default path runs.
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("input and target must be torch.Tensors")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int; got {ignore_index!r}")
    softcap = None if softcap in (None, 0, 0.0) else float(softcap)
    logits, rows_target, row_shape = _flatten(input, target)
    # The op runs arguments.check_arguments (the target's values included); only the types here.
    check_tensor_types(weight=weight)
    backend = backends.requested_backend()
    arguments = (logits, rows_target, weight, ignore_index, reduction, float(label_smoothing), float(z_loss), softcap, backend)
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"inplace_backward must be a bool; got {inplace_backward!r}")
    if inplace_backward and logits.requires_grad and not logits.is_leaf and torch.is_grad_enabled() and logits.stride(-1) == 1:
        loss, lse = InplaceCrossEntropy.apply(*arguments)
    else:
        loss, lse = torch.ops.llmkernels.cross_entropy(*arguments)
    if reduction == "none":
        loss = loss.reshape(row_shape)
    if not torch.is_autocast_enabled(input.device.type):
        loss = loss.to(input.dtype)
    if return_lse:
        return loss, lse.detach().reshape(row_shape)
    return loss
