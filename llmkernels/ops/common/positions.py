"""Position ids, shared by the positional-encoding families (rotary, sinusoidal).

``position_ids`` is (seq,), (1, seq) or (batch, seq) ints; kernels take it as int64 (P, seq),
P in {1, batch}, contiguous, or None for ``arange(seq)``.
"""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import INDEX_DTYPES, check_dim_size, check_same_device, check_tensor


def check_position_shape(position_ids: torch.Tensor, x_name: str, x: torch.Tensor, batch: int, seq: int) -> None:
    """Shape, dtype and device of position_ids for x (batch, ..., seq, ...); values are the caller's."""
    check_tensor("position_ids", position_ids, ndims=(1, 2), dtypes=INDEX_DTYPES)
    check_same_device("position_ids", position_ids, x_name, x)
    check_dim_size("position_ids", position_ids, -1, seq, f"{x_name}'s seq")
    if position_ids.dim() == 2 and position_ids.shape[0] not in (1, batch):
        raise ValueError(
            f"position_ids must be (seq,), (1, seq) or (batch, seq) with batch {batch}; "
            f"got shape {tuple(position_ids.shape)}"
        )


def normalize_positions(position_ids: torch.Tensor | None) -> torch.Tensor | None:
    """int64 (P, seq), contiguous, P in {1, batch}; None stays None."""
    if position_ids is None:
        return None
    if position_ids.dim() == 1:
        position_ids = position_ids.unsqueeze(0)
    return position_ids.to(torch.int64).contiguous()
