"""Validation of linear cross-entropy arguments (the CE options are checked by the CE family)."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor
from llmkernels.ops.cross_entropy.arguments import check_arguments as check_ce_arguments


def is_float32_master(input, weight) -> bool:
    """A float32 weight with a bf16/fp16 input (autocast's master weight): the projection runs in the
    input's dtype and the weight's gradient comes back in float32, summed in float32 and never
    rounded to the input's dtype on the way."""
    return weight.dtype == torch.float32 and input.dtype in (torch.bfloat16, torch.float16)


def check_projection(input, weight, bias, names=("input", "linear_weight", "linear_bias"),
                     float32_master: bool = False) -> None:
    """input (N, H), weight (V, H) of input's dtype and device, bias (V,) of weight's dtype, or None.
    ``float32_master`` also accepts a float32 weight (and bias) with a bf16/fp16 input."""
    input_name, weight_name, bias_name = names
    check_tensor(input_name, input, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_tensor(weight_name, weight, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_same_device(weight_name, weight, input_name, input)
    if weight.dtype != input.dtype and not (float32_master and is_float32_master(input, weight)):
        allowed = " (or float32 for a bf16/fp16 input)" if float32_master else ""
        raise ValueError(f"{weight_name} must have {input_name}'s dtype {input.dtype}{allowed}; got {weight.dtype}")
    if weight.shape[1] != input.shape[1]:
        raise ValueError(
            f"{weight_name} must be (vocab, {input.shape[1]}) for {input_name}'s hidden size {input.shape[1]}; "
            f"got shape {tuple(weight.shape)}"
        )
    if bias is not None:
        check_tensor(bias_name, bias, ndims=(1,), dtypes=(weight.dtype,))
        check_same_device(bias_name, bias, input_name, input)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"{bias_name} must have {weight.shape[0]} values (vocab); got shape {tuple(bias.shape)}")


def check_arguments(input, weight, bias, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index):
    check_projection(input, weight, bias, float32_master=True)
    # The CE checks on a zero-stride stand-in for the logits: shape (N, V), no memory.
    logits_like = input.new_empty(()).expand(input.shape[0], weight.shape[0])
    check_ce_arguments(logits_like, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index)


def check_accum_dtype(accum_dtype, weight: torch.Tensor) -> bool:
    """Whether the weight/bias gradients are summed across chunks in float32 (else in the weight's
    dtype). accum_dtype is that accumulator: float32 (the default; float64 weights always sum in
    float64) or the weight's own dtype. float64 with lower-precision weights is refused, not
    quietly run in float32: each chunk's GEMM would still be float32, so a float64 sum of them is
    not the float64 math a user asking for it expects (pass float64 tensors for that)."""
    if accum_dtype not in (torch.float32, torch.float64, weight.dtype) or accum_dtype not in FLOAT_DTYPES:
        raise ValueError(f"accum_dtype must be torch.float32 or the weight's dtype ({weight.dtype}); got {accum_dtype}")
    if accum_dtype == torch.float64 and weight.dtype != torch.float64:
        raise ValueError(
            f"accum_dtype torch.float64 needs float64 weights (the chunk GEMMs run in the weight's dtype); got {weight.dtype}"
        )
    return accum_dtype == torch.float32 and weight.dtype != torch.float64
