"""Validation of cross-entropy arguments, shared by the wrapper, the op and its fake kernel."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, assert_on_device, can_check_values, check_same_device, check_tensor, is_finite_number

REDUCTIONS = ("none", "mean", "sum")


def check_arguments(logits, target, weight, reduction, label_smoothing, z_loss, softcap, ignore_index) -> None:
    """logits (N, C) and target (N,) as the op sees them (the wrapper flattened any extra dims)."""
    check_tensor("input", logits, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_tensor("target", target)
    if target.is_floating_point():
        raise ValueError(
            f"target must hold class indices (int64); got {target.dtype} (class-probability targets "
            "are not supported)"
        )
    check_tensor("target", target, ndims=(1,), dtypes=(torch.int32, torch.int64))
    check_same_device("target", target, "input", logits)
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"target has {target.shape[0]} rows but input has {logits.shape[0]} (input shape {tuple(logits.shape)})")
    if weight is not None:
        check_tensor("weight", weight, ndims=(1,), dtypes=FLOAT_DTYPES)
        check_same_device("weight", weight, "input", logits)
        if weight.shape[0] != logits.shape[1]:
            raise ValueError(f"weight must have one value per class ({logits.shape[1]}); got shape {tuple(weight.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if not (0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"label_smoothing must lie in [0, 1]; got {label_smoothing!r}")
    if not (is_finite_number(z_loss) and z_loss >= 0):
        raise ValueError(f"z_loss must be a finite number >= 0; got {z_loss!r}")
    if softcap is not None and not (is_finite_number(softcap) and softcap >= 0):
        raise ValueError(f"softcap must be None, 0 (off) or a finite positive number; got {softcap!r}")
    if logits.shape[1] == 0 and logits.shape[0] > 0:
        raise ValueError(f"input must have at least one class; got shape {tuple(logits.shape)}")
    if can_check_values(target) and target.numel():
        valid = target[target != ignore_index]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= logits.shape[1]):
            raise ValueError(
                f"target values must lie in [0, {logits.shape[1]}) or equal ignore_index ({ignore_index}); "
                f"got values in [{int(valid.min())}, {int(valid.max())}]"
            )
    else:
        classes = logits.shape[1]
        assert_on_device(target, lambda: ((target >= 0) & (target < classes)) | (target == ignore_index),
                         f"target values must lie in [0, {classes}) or equal ignore_index ({ignore_index})")
