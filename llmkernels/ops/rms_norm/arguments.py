"""Validation of rms_norm arguments, shared by the wrapper, the op and its fake kernels."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor, is_finite_number


def check_eps(eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, torch.SymInt, torch.SymFloat)):
        raise TypeError(f"eps must be a number; got {type(eps).__name__}")
    if not (is_finite_number(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")


def check_like_x(name: str, value, x: torch.Tensor, *, same_dtype: bool = True, x_name: str = "x") -> None:
    """A tensor that must match x in shape and device, and in dtype unless ``same_dtype`` is
    False (then any floating dtype: residual, grad_y)."""
    check_tensor(name, value, dtypes=None if same_dtype else FLOAT_DTYPES)
    if value.shape != x.shape:
        raise ValueError(f"{name} must have {x_name}'s shape {tuple(x.shape)}; got {tuple(value.shape)}")
    if same_dtype and value.dtype != x.dtype:
        raise ValueError(f"{name} must have {x_name}'s dtype {x.dtype}; got {value.dtype}")
    check_same_device(name, value, x_name, x)


def check_dtype_arg(name: str, dtype) -> None:
    """An optional output dtype (out_dtype, the backward's dx_dtype/dresidual_dtype)."""
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be None or a torch.dtype; got {type(dtype).__name__}")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must be None or one of {', '.join(str(d) for d in FLOAT_DTYPES)}; got {dtype!r}"
        )


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


def check_all(x, residual, weight, eps, out_dtype=None) -> None:
    check_input("x", x)
    if residual is not None:
        check_like_x("residual", residual, x, same_dtype=False)
    check_weight(weight, x)
    check_eps(eps)
    check_dtype_arg("out_dtype", out_dtype)
