"""Triton kernels for rotary embedding (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

One program handles one (batch, seq) row for a block of heads: it loads that position's cos/sin
row once and rotates every head in the block. q and k go through one launch: the second grid
axis numbers q's head blocks first, then k's.
"""

from __future__ import annotations

import triton
import triton.language as tl

from llmkernels.ops.common.triton_positions import position_args, row_and_position


@triton.jit
def _rotate_heads(
    x_ptr, out_ptr, cos_row, sin_row, cols, b, s, head_block, heads, head_dim, half,
    sxb, sxh, sxs, sob, soh, sos,
    INTERLEAVED: tl.constexpr, COPY_REST: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_REST: tl.constexpr,
):
    h = head_block * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = h < heads
    mask = h_mask[:, None] & (cols < half)[None, :]
    x_row = x_ptr + b.to(tl.int64) * sxb + s.to(tl.int64) * sxs + h.to(tl.int64)[:, None] * sxh
    o_row = out_ptr + b.to(tl.int64) * sob + s.to(tl.int64) * sos + h.to(tl.int64)[:, None] * soh
    if INTERLEAVED:
        first, second = 2 * cols[None, :], 2 * cols[None, :] + 1
    else:
        first, second = cols[None, :], cols[None, :] + half
    a = tl.load(x_row + first, mask=mask, other=0.0).to(tl.float32)
    bb = tl.load(x_row + second, mask=mask, other=0.0).to(tl.float32)
    a_out = a * cos_row[None, :] - bb * sin_row[None, :]
    b_out = bb * cos_row[None, :] + a * sin_row[None, :]
    tl.store(o_row + first, a_out.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(o_row + second, b_out.to(out_ptr.dtype.element_ty), mask=mask)
    if COPY_REST:
        rest = tl.arange(0, BLOCK_REST)
        for start in range(2 * half, head_dim, BLOCK_REST):
            c = start + rest
            m = h_mask[:, None] & (c < head_dim)[None, :]
            tl.store(o_row + c[None, :], tl.load(x_row + c[None, :], mask=m), mask=m)


@triton.jit
def _rotary_kernel(
    q_ptr, q_out_ptr, k_ptr, k_out_ptr, cos_ptr, sin_ptr, pos_ptr,
    seq, heads_q, heads_k, head_dim, half, pos_batch_stride, q_head_blocks,
    sqb, sqh, sqs, soqb, soqh, soqs,
    skb, skh, sks, sokb, sokh, soks,
    HAS_POS: tl.constexpr, INTERLEAVED: tl.constexpr, CONJUGATE: tl.constexpr,
    COPY_REST_Q: tl.constexpr, COPY_REST_K: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_REST: tl.constexpr,
):
    b, s, position = row_and_position(pos_ptr, seq, pos_batch_stride, HAS_POS)
    head_block = tl.program_id(1)
    cols = tl.arange(0, BLOCK_HALF)
    cos_row = tl.load(cos_ptr + position * half + cols, mask=cols < half, other=0.0)
    sin_row = tl.load(sin_ptr + position * half + cols, mask=cols < half, other=0.0)
    if CONJUGATE:
        sin_row = -sin_row
    if head_block < q_head_blocks:
        _rotate_heads(
            q_ptr, q_out_ptr, cos_row, sin_row, cols, b, s, head_block, heads_q, head_dim, half,
            sqb, sqh, sqs, soqb, soqh, soqs, INTERLEAVED, COPY_REST_Q, BLOCK_H, BLOCK_HALF, BLOCK_REST,
        )
    else:
        _rotate_heads(
            k_ptr, k_out_ptr, cos_row, sin_row, cols, b, s, head_block - q_head_blocks, heads_k, head_dim,
            half, skb, skh, sks, sokb, sokh, soks, INTERLEAVED, COPY_REST_K, BLOCK_H, BLOCK_HALF, BLOCK_REST,
        )


# A program's (heads, pairs) block holds at most this many pairs (more when one head's pairs do).
PAIRS_PER_PROGRAM = 2048


def blocks(heads_q: int, half: int, head_dim: int) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_HALF, BLOCK_REST) of a launch (also what triton_cases.py compiles)."""
    block_half = triton.next_power_of_2(half)
    block_h = max(1, min(triton.next_power_of_2(heads_q), PAIRS_PER_PROGRAM // block_half))
    return block_h, block_half, triton.next_power_of_2(max(head_dim - 2 * half, 1))


def rotary(q, q_out, k, k_out, cos, sin, position_ids, interleaved, conjugate):
    """Same contract as csrc/rotary/rotary.h: outputs written in place, q_out may alias q."""
    batch, heads_q, seq, head_dim = q.shape
    half = cos.shape[1]
    block_h, block_half, block_rest = blocks(heads_q, half, head_dim)
    q_blocks = triton.cdiv(heads_q, block_h)
    if k is None:
        k, k_out, k_blocks = q, q_out, 0
    else:
        k_blocks = triton.cdiv(k.shape[1], block_h)
    pos, pos_batch_stride, has_pos = position_args(position_ids, cos)
    grid = (batch * seq, q_blocks + k_blocks)
    _rotary_kernel[grid](
        q, q_out, k, k_out, cos, sin, pos,
        seq, heads_q, k.shape[1], head_dim, half, pos_batch_stride, q_blocks,
        q.stride(0), q.stride(1), q.stride(2), q_out.stride(0), q_out.stride(1), q_out.stride(2),
        k.stride(0), k.stride(1), k.stride(2), k_out.stride(0), k_out.stride(1), k_out.stride(2),
        HAS_POS=has_pos, INTERLEAVED=interleaved, CONJUGATE=conjugate,
        COPY_REST_Q=(head_dim > 2 * half and q_out.data_ptr() != q.data_ptr()),
        COPY_REST_K=(head_dim > 2 * half and k_out.data_ptr() != k.data_ptr()),
        BLOCK_H=block_h, BLOCK_HALF=block_half, BLOCK_REST=block_rest,
    )
