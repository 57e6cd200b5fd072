"""Validation of sinusoidal position-encoding arguments, shared by the wrapper, the op and its fake."""

from __future__ import annotations

from llmkernels.ops.common.checks import FLOAT_DTYPES, assert_on_device, can_check_values, check_tensor
from llmkernels.ops.common.positions import check_position_shape


def check_arguments(x, position_ids, base: float, scale: float) -> None:
    check_tensor("x", x, ndims=(3,), dtypes=FLOAT_DTYPES)
    if not base > 1:
        raise ValueError(f"base must be > 1; got {base!r}")
    if position_ids is None:
        return
    check_position_shape(position_ids, "x", x, x.shape[0], x.shape[1])
    if can_check_values(position_ids) and position_ids.numel() and int(position_ids.min()) < 0:
        raise ValueError(f"position_ids must be >= 0; got a minimum of {int(position_ids.min())}")
    if not can_check_values(position_ids):
        assert_on_device(position_ids, lambda: position_ids >= 0, "position_ids must be >= 0")
