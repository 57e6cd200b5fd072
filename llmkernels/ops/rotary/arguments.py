"""Validation of rotary arguments, shared by the wrappers, the real and the fake kernels."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import (
    FLOAT_DTYPES,
    assert_on_device,
    can_check_values,
    check_dim_size,
    check_same_device,
    check_tensor,
)
from llmkernels.ops.common.positions import check_position_shape


def check_tables(x_name: str, x: torch.Tensor, cos, sin) -> None:
    check_tensor("cos", cos, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_tensor("sin", sin, ndims=(2,), dtypes=FLOAT_DTYPES)
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape; got {tuple(cos.shape)} and {tuple(sin.shape)}")
    check_same_device("cos", cos, x_name, x)
    check_same_device("sin", sin, x_name, x)
    rotary_dim = 2 * cos.shape[1]
    if rotary_dim == 0:
        raise ValueError(f"cos must have at least one column (rotary_dim // 2); got shape {tuple(cos.shape)}")
    if rotary_dim > x.shape[-1]:
        raise ValueError(
            f"rotary_dim = 2 * cos.shape[-1] = {rotary_dim} exceeds {x_name}'s head_dim {x.shape[-1]}"
        )


def check_input(name: str, x) -> None:
    check_tensor(name, x, ndims=(4,), dtypes=FLOAT_DTYPES)


def check_positions(x_name: str, x: torch.Tensor, cos: torch.Tensor, position_ids) -> None:
    batch, seq, max_positions = x.shape[0], x.shape[2], cos.shape[0]
    if position_ids is None:
        if seq > max_positions:
            raise ValueError(
                f"{x_name} has seq {seq} but the cos/sin cache holds only {max_positions} positions; "
                "build a longer cache or pass position_ids"
            )
        return
    check_position_shape(position_ids, x_name, x, batch, seq)
    if can_check_values(position_ids) and position_ids.numel():
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0 or high >= max_positions:
            raise ValueError(
                f"position_ids must lie in [0, {max_positions}) (the cos/sin cache length); "
                f"got values in [{low}, {high}]"
            )
    else:
        assert_on_device(position_ids, lambda: (position_ids >= 0) & (position_ids < max_positions),
                         f"position_ids must lie in [0, {max_positions}) (the cos/sin cache length)")


def check_all(q, k, cos, sin, position_ids) -> None:
    check_input("q" if k is not None else "x", q)
    x_name = "q" if k is not None else "x"
    if k is not None:
        check_input("k", k)
        check_same_device("k", k, "q", q)
        if k.dtype != q.dtype:
            raise ValueError(f"k must have q's dtype {q.dtype}; got {k.dtype}")
        for dim, what in ((0, "batch"), (2, "seq"), (3, "head_dim")):
            check_dim_size("k", k, dim, q.shape[dim], f"q's {what}")
    check_tables(x_name, q, cos, sin)
    check_positions(x_name, q, cos, position_ids)
