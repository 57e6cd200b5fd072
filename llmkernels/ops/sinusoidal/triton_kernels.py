"""Triton kernel for the sinusoidal position encoding: PE computed on the fly, fused with x * scale.

One program per (batch, seq) row and block of column pairs; the angle is float32(pos) *
inv_freq[i] as in the reference, with precise sin/cos.
"""

from __future__ import annotations

import triton
import triton.language as tl

from llmkernels.ops.common.triton_positions import position_args, row_and_position


@triton.jit
def _add_encoding_kernel(
    x_ptr, out_ptr, inv_freq_ptr, pos_ptr, scale,
    seq, d_model, pairs, pos_batch_stride, sxb, sxs, sob, sos,
    HAS_POS: tl.constexpr, BLOCK: tl.constexpr,
):
    b, s, position = row_and_position(pos_ptr, seq, pos_batch_stride, HAS_POS)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    angle = position.to(tl.float32) * tl.load(inv_freq_ptr + i, mask=i < pairs, other=0.0)
    x_row = x_ptr + b.to(tl.int64) * sxb + s.to(tl.int64) * sxs
    o_row = out_ptr + b.to(tl.int64) * sob + s.to(tl.int64) * sos
    even, odd = 2 * i, 2 * i + 1
    x_even = tl.load(x_row + even, mask=even < d_model, other=0.0).to(tl.float32)
    x_odd = tl.load(x_row + odd, mask=odd < d_model, other=0.0).to(tl.float32)
    tl.store(o_row + even, (x_even * scale + tl.sin(angle)).to(out_ptr.dtype.element_ty), mask=even < d_model)
    tl.store(o_row + odd, (x_odd * scale + tl.cos(angle)).to(out_ptr.dtype.element_ty), mask=odd < d_model)


MAX_BLOCK = 1024


def block_size(pairs: int) -> int:
    """Column pairs per program (also what triton_cases.py compiles)."""
    return min(MAX_BLOCK, triton.next_power_of_2(pairs))


def add_sinusoidal(x, out, inv_freq, position_ids, scale):
    """Same contract as csrc/sinusoidal/sinusoidal.h (the CUDA variant, PE from inv_freq)."""
    batch, seq, d_model = x.shape
    pairs = inv_freq.shape[0]
    block = block_size(pairs)
    pos, pos_batch_stride, has_pos = position_args(position_ids, inv_freq)
    grid = (batch * seq, triton.cdiv(pairs, block))
    _add_encoding_kernel[grid](
        x, out, inv_freq, pos, scale, seq, d_model, pairs, pos_batch_stride,
        x.stride(0), x.stride(1), out.stride(0), out.stride(1),
        HAS_POS=has_pos, BLOCK=block,
    )
