"""Validation of linear cross-entropy arguments (the CE options are checked by the CE family)."""

from __future__ import annotations

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor
from llmkernels.ops.cross_entropy.arguments import check_arguments as check_ce_arguments


def check_arguments(input, weight, bias, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index):
    check_tensor("input", input, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_tensor("linear_weight", weight, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_same_device("linear_weight", weight, "input", input)
    if weight.dtype != input.dtype:
        raise ValueError(f"linear_weight must have input's dtype {input.dtype}; got {weight.dtype}")
    if weight.shape[1] != input.shape[1]:
        raise ValueError(
            f"linear_weight must be (vocab, {input.shape[1]}) for input's hidden size {input.shape[1]}; "
            f"got shape {tuple(weight.shape)}"
        )
    if bias is not None:
        check_tensor("linear_bias", bias, ndims=(1,), dtypes=(input.dtype,))
        check_same_device("linear_bias", bias, "input", input)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"linear_bias must have {weight.shape[0]} values (vocab); got shape {tuple(bias.shape)}")
    # The CE checks on a zero-stride stand-in for the logits: shape (N, V), no memory.
    logits_like = input.new_empty(()).expand(input.shape[0], weight.shape[0])
    check_ce_arguments(logits_like, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
