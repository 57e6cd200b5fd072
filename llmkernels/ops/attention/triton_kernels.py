"""Triton kernels for fused (flash) attention (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

Contract: csrc/attention/attention.h. This file holds the FlashAttention-2 forward and the two
entry points; the score function and per-program helpers are in triton_scores.py, the host-side
launch helpers in triton_launch.py, the backward in triton_backward.py.

A query block only visits the key blocks its causal/window band can reach. Rows that see no key
keep a running max of -inf; the max is replaced by 0 before subtracting so that no -inf - -inf
turns into NaN, and such rows end with out = 0 and lse = -inf.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_launch import (
    TileTable, block_d, device_guard, dot_precision, launch, mask_flags, score_args, seq_bucket,
)
from .triton_scores import alibi_slope2, key_range, query_block_scores, query_tile

_FWD_TILES = TileTable(
    by_head_dim={
        64: [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 32, 4, 2)],
        128: [(128, 64, 8, 3), (128, 64, 8, 2), (64, 64, 8, 3), (128, 32, 8, 2), (64, 32, 4, 2)],
        256: [(64, 32, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2)],
    },
    not_on={  # make cuda-check: shared memory past the card, or spills where another tile does not
        (80, "16bit", 128): [(128, 64, 8, 2)],
        (80, "16bit", 256): [(128, 32, 8, 2)],
        (80, "fp32", 128): [(64, 64, 8, 3), (128, 64, 8, 3)],
        (80, "fp32", 256): [(64, 64, 8, 2), (128, 32, 8, 2)],
        (80, "ieee", 64): [(32, 32, 4, 2)],
        (80, "ieee", 256): [(16, 32, 4, 1)],
        (90, "16bit", 256): [(64, 64, 8, 2)],
        (90, "fp32", 64): [(128, 64, 4, 3)],
        (90, "fp32", 128): [(128, 64, 8, 3)],
        (90, "fp32", 256): [(64, 64, 8, 2), (128, 32, 8, 2)],
    },
)


@triton.jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, slopes_ptr, kpm_ptr,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som,
    heads, group, Sq, Sk, head_dim, offset, window_left, window_right,
    qk_scale, cap_in, cap_out, sq_bucket, sk_bucket,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_KPM: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b, h, hk, m_start, rows, row_ok, offs_d, d_ok = query_tile(heads, group, Sq, head_dim, BLOCK_M, BLOCK_D)
    q = tl.load(
        q_ptr + b * sqb + h * sqh + rows[:, None] * sqm + offs_d[None, :],
        mask=row_ok[:, None] & d_ok[None, :], other=0.0,
    )
    k_base = k_ptr + b * skb + hk * skh
    v_base = v_ptr + b * svb + hk * svh
    slope2 = alibi_slope2(slopes_ptr, b, heads, h, HAS_ALIBI)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, hi = key_range(m_start, Sq, Sk, offset, window_left, window_right,
                       IS_CAUSAL, HAS_WL, HAS_WR, BLOCK_M, BLOCK_N)
    for n_start in range(lo, hi, BLOCK_N):
        cols = n_start + tl.arange(0, BLOCK_N)
        s, _t, _kt = query_block_scores(
            q, k_base, skn, kpm_ptr, b, rows, cols, offs_d, d_ok, slope2, Sq, Sk, offset,
            window_left, window_right, qk_scale, cap_in, cap_out,
            IS_CAUSAL, HAS_WL, HAS_WR, HAS_SOFTCAP, HAS_ALIBI, HAS_KPM, PRECISION,
        )
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * svn + offs_d[None, :],
                    mask=(cols < Sk)[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(l_safe)) * 0.6931471805599453)
    tl.store(out_ptr + b * sob + h * soh + rows[:, None] * som + offs_d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    tl.store(lse_ptr + (b * heads + h) * Sq + rows, lse, mask=row_ok)


def attention_forward(q, k, v, out, lse, scale, causal, window_left, window_right, softcap,
                      alibi_slopes, key_padding_mask) -> None:
    """Same contract as csrc/attention/attention.h: writes out and lse in place. The op answers
    empty problems itself (no queries or no keys), so every dimension here is positive."""
    batch, heads, sq, head_dim = q.shape
    heads_kv, sk = k.shape[1], k.shape[2]
    slopes, kpm, scalars, flags = score_args(scale, softcap, alibi_slopes, key_padding_mask, q)

    def grid(meta):
        return (triton.cdiv(sq, meta["BLOCK_M"]), batch * heads)

    with device_guard(q):
        launch(
            _attn_fwd_kernel, _FWD_TILES, grid, q, k, v, out, lse, slopes, kpm,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
            heads, heads // heads_kv, sq, sk, head_dim, sk - sq, int(window_left), int(window_right),
            sq_bucket=seq_bucket(sq), sk_bucket=seq_bucket(sk),
            **scalars, **flags, **mask_flags(causal, window_left, window_right),
            PRECISION=dot_precision(q.dtype), BLOCK_D=block_d(head_dim),
        )


def attention_backward(q, k, v, out, dout, lse, dq, dk, dv, scale, causal, window_left,
                       window_right, softcap, alibi_slopes, key_padding_mask) -> None:
    """Same contract as csrc/attention/attention.h; the kernels are in triton_backward.py."""
    from .triton_backward import attention_backward as _backward

    _backward(q, k, v, out, dout, lse, dq, dk, dv, scale, causal, window_left, window_right,
              softcap, alibi_slopes, key_padding_mask)


__all__ = ["attention_forward", "attention_backward"]
