"""Validation of linear cross-entropy arguments (the CE options are checked by the CE family)."""

from __future__ import annotations

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor
from llmkernels.ops.cross_entropy.arguments import check_arguments as check_ce_arguments


def check_projection(input, weight, bias, names=("input", "linear_weight", "linear_bias")) -> None:
    """input (N, H), weight (V, H) of input's dtype and device, bias (V,) or None."""
    input_name, weight_name, bias_name = names
    check_tensor(input_name, input, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_tensor(weight_name, weight, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_same_device(weight_name, weight, input_name, input)
    if weight.dtype != input.dtype:
        raise ValueError(f"{weight_name} must have {input_name}'s dtype {input.dtype}; got {weight.dtype}")
    if weight.shape[1] != input.shape[1]:
        raise ValueError(
            f"{weight_name} must be (vocab, {input.shape[1]}) for {input_name}'s hidden size {input.shape[1]}; "
            f"got shape {tuple(weight.shape)}"
        )
    if bias is not None:
        check_tensor(bias_name, bias, ndims=(1,), dtypes=(input.dtype,))
        check_same_device(bias_name, bias, input_name, input)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"{bias_name} must have {weight.shape[0]} values (vocab); got shape {tuple(bias.shape)}")


def check_arguments(input, weight, bias, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index):
    check_projection(input, weight, bias)
    # The CE checks on a zero-stride stand-in for the logits: shape (N, V), no memory.
    logits_like = input.new_empty(()).expand(input.shape[0], weight.shape[0])
    check_ce_arguments(logits_like, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
