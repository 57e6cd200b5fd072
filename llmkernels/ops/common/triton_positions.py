"""Triton helpers for kernels that handle one (batch, seq) row per program and read its position
(rotary, sinusoidal). Imported only by ``triton_kernels`` modules, so Triton stays optional."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def row_and_position(pos_ptr, seq, pos_batch_stride, HAS_POS: tl.constexpr):
    """(b, s, position) of the row this program handles: grid axis 0 numbers batch * seq rows;
    position_ids is int64 (P, seq) with ``pos_batch_stride`` 0 when P == 1, else arange(seq)."""
    row = tl.program_id(0)
    b = row // seq
    s = row % seq
    if HAS_POS:
        position = tl.load(pos_ptr + b.to(tl.int64) * pos_batch_stride + s)
    else:
        position = s.to(tl.int64)
    return b, s, position


def position_args(position_ids, placeholder):
    """(pointer, batch stride, HAS_POS) for ``row_and_position``; ``placeholder`` stands in for
    absent position_ids (any tensor: never read)."""
    if position_ids is None:
        return placeholder, 0, False
    batch_stride = position_ids.stride(0) if position_ids.shape[0] > 1 else 0
    return position_ids, batch_stride, True
