"""Validation and normalisation of rotary arguments, shared by the real and the fake kernels."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    can_check_values,
    check_dim_size,
    check_same_device,
    check_tensor,
)


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
    check_tensor("position_ids", position_ids, ndims=(1, 2), dtypes=INDEX_DTYPES)
    check_same_device("position_ids", position_ids, x_name, x)
    check_dim_size("position_ids", position_ids, -1, seq, f"{x_name}'s seq")
    if position_ids.dim() == 2 and position_ids.shape[0] not in (1, batch):
        raise ValueError(
            f"position_ids must be (seq,), (1, seq) or (batch, seq) with batch {batch}; "
            f"got shape {tuple(position_ids.shape)}"
        )
    if can_check_values(position_ids) and position_ids.numel():
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0 or high >= max_positions:
            raise ValueError(
                f"position_ids must lie in [0, {max_positions}) (the cos/sin cache length); "
                f"got values in [{low}, {high}]"
            )


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


def normalize_positions(position_ids: torch.Tensor | None) -> torch.Tensor | None:
    """int64 (P, seq), contiguous, P in {1, batch}."""
    if position_ids is None:
        return None
    if position_ids.dim() == 1:
        position_ids = position_ids.unsqueeze(0)
    return position_ids.to(torch.int64).contiguous()


def new_output_like(x: torch.Tensor) -> torch.Tensor:
    """An output with x's layout where that layout keeps the last dim contiguous (kernels need it)."""
    out = torch.empty_like(x)
    if out.dim() and out.stride(-1) != 1 and out.shape[-1] > 1:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    return out


def kernel_input(x: torch.Tensor) -> torch.Tensor:
    """Kernels read rows with unit stride in the last dim; any other strides are fine."""
    return x if x.stride(-1) == 1 or x.shape[-1] <= 1 else x.contiguous()
