"""Validation of rms_norm arguments, shared by the wrapper, the op and its fake kernels."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor, is_finite_number


def check_eps(eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, torch.SymInt, torch.SymFloat)):
        raise TypeError(f"eps must be a number; got {type(eps).__name__}")
    if not (is_finite_number(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")


def check_like_x(name: str, value, x: torch.Tensor) -> None:
    """A tensor that must match x in shape, dtype and device (residual, the gradients)."""
    check_tensor(name, value)
    if value.shape != x.shape:
        raise ValueError(f"{name} must have x's shape {tuple(x.shape)}; got {tuple(value.shape)}")
    if value.dtype != x.dtype:
        raise ValueError(f"{name} must have x's dtype {x.dtype}; got {value.dtype}")
    check_same_device(name, value, "x", x)


def check_weight(weight, x: torch.Tensor) -> None:
    if weight is None:
        return
    check_tensor("weight", weight, ndims=(1,), dtypes=FLOAT_DTYPES)
    if weight.shape[0] != x.shape[-1]:
        raise ValueError(
            f"weight must have shape ({x.shape[-1]},) (x's last dimension); got {tuple(weight.shape)}"
        )
    check_same_device("weight", weight, "x", x)


def check_input(name: str, x) -> None:
    check_tensor(name, x, dtypes=FLOAT_DTYPES)
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (the normalised one); got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} must have a last dimension of at least 1; got shape {tuple(x.shape)}")


def check_all(x, residual, weight, eps) -> None:
    check_input("x", x)
    if residual is not None:
        check_like_x("residual", residual, x)
    check_weight(weight, x)
    check_eps(eps)
