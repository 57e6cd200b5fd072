"""Validation of linear arguments, shared by the wrapper, the ops and their fake kernels."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor


def check_inputs(x, weight, bias) -> None:
    check_tensor("x", x, dtypes=FLOAT_DTYPES)
    check_tensor("weight", weight, ndims=(2,), dtypes=(x.dtype,))
    check_same_device("weight", weight, "x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (..., in_features); got a 0-d tensor")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x's last dimension ({x.shape[-1]}) must be weight's in_features, its second dimension; "
            f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}"
        )
    if bias is not None:
        check_tensor("bias", bias, ndims=(1,), dtypes=(x.dtype,))
        check_same_device("bias", bias, "x", x)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have weight's out_features ({weight.shape[0]}) elements; got {tuple(bias.shape)}")


def output_shape(x: torch.Tensor, weight: torch.Tensor) -> tuple[int, ...]:
    return (*x.shape[:-1], weight.shape[0])


def check_grad(grad, x, weight) -> None:
    check_inputs(x, weight, None)
    check_tensor("grad", grad, dtypes=(x.dtype,))
    check_same_device("grad", grad, "x", x)
    expected = output_shape(x, weight)
    if tuple(grad.shape) != expected:
        raise ValueError(f"grad must have the output's shape {expected}; got {tuple(grad.shape)}")
