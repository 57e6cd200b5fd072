"""Triton kernels for the fused attention backward (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

Contract: csrc/attention/attention.h. Three launches, all deterministic (no atomics):
  1. Delta = rowsum(dout * out) and lse in log2 units, fp32 (B, Hq, Sq);
  2. dK/dV, one program per key block and key/value head: it loops over the query heads of its
     GQA group and the query blocks whose band reaches the key block, so the group sum of dk/dv
     stays in registers;
  3. dQ, one program per query block and query head, over the key blocks of the forward's band.
P is recomputed from the forward's lse; rows with lse = -inf get +inf there so that P = 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_launch import (
    TileTable, block_d, device_guard, dot_precision, launch, mask_flags, score_args, seq_bucket,
)
from .triton_scores import alibi_slope2, key_range, keys_kept, query_block_scores, query_range, query_tile, scores


@triton.jit
def _attn_bwd_prep_kernel(
    out_ptr, do_ptr, lse_ptr, delta_ptr, lse2_ptr, sob, soh, som, sdb, sdh, sdm, heads, Sq, sq_pad,
    head_dim, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Delta = rowsum(dout * out), and lse2 = lse * log2(e), +inf for rows that saw no key (so
    their P = exp2(s - lse2) is 0), both (B, Hq, sq_pad): padding rows get Delta 0 and lse2 +inf,
    so the later kernels load them without masks (Triton 3.2 miscompiled a masked load there)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // heads).to(tl.int64)
    h = (bh % heads).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = rows < Sq
    mask = row_ok[:, None] & (offs_d < head_dim)[None, :]
    o = tl.load(out_ptr + b * sob + h * soh + rows[:, None] * som + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(do_ptr + b * sdb + h * sdh + rows[:, None] * sdm + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    lse = tl.load(lse_ptr + (b * heads + h) * Sq + rows, mask=row_ok, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    pad_offs = (b * heads + h) * sq_pad + rows
    tl.store(delta_ptr + pad_offs, delta, mask=rows < sq_pad)
    tl.store(lse2_ptr + pad_offs, lse2, mask=rows < sq_pad)


# Rows per program of the Delta/lse2 pass on a GPU (16 under the interpreter, to keep tests fast).
PREP_BLOCK_M = 64

_DKDV_TILES = TileTable(
    by_head_dim={
        64: [(32, 64, 4, 2), (64, 64, 4, 2), (64, 128, 8, 2), (32, 128, 8, 2), (32, 64, 8, 2), (16, 64, 4, 2)],
        128: [(32, 64, 8, 2), (32, 64, 8, 3), (64, 64, 8, 2), (16, 64, 4, 2)],
        256: [(32, 32, 8, 2), (16, 32, 4, 2), (16, 64, 8, 2)],
    },
    not_on={  # make cuda-check: shared memory past the card, or spills where another tile does not
        (80, "16bit", 64): [(32, 64, 4, 2), (64, 64, 4, 2), (64, 128, 8, 2), (32, 128, 8, 2)],
        (80, "16bit", 128): [(16, 64, 4, 2), (64, 64, 8, 2)],
        (80, "16bit", 256): [(16, 32, 4, 2), (16, 64, 8, 2)],
        (80, "fp32", 256): [(16, 64, 8, 2)],
        (80, "ieee", 64): [(32, 32, 4, 2)],
        (80, "ieee", 128): [(32, 32, 4, 2)],
        (90, "16bit", 128): [(64, 64, 8, 2)],
        (90, "16bit", 256): [(16, 32, 4, 2), (16, 64, 8, 2)],
        (90, "fp32", 64): [(64, 64, 4, 2)],
        (90, "fp32", 256): [(16, 32, 4, 2), (16, 64, 8, 2)],
        (90, "ieee", 64): [(32, 32, 4, 2)],
    },
)


@triton.jit
def _attn_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse2_ptr, delta_ptr, dk_ptr, dv_ptr, slopes_ptr, kpm_ptr,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdb, sdh, sdm,
    heads, heads_kv, group, Sq, Sk, head_dim, offset, window_left, window_right,
    scale, qk_scale, cap_in, cap_out, sq_bucket, sk_bucket, sq_pad,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_KPM: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0)
    bhk = tl.program_id(1)
    b = (bhk // heads_kv).to(tl.int64)
    hk = (bhk % heads_kv).to(tl.int64)
    n_start = pid_n * BLOCK_N
    cols = n_start + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < head_dim
    col_ok = cols < Sk
    kv_mask = col_ok[:, None] & d_ok[None, :]
    k = tl.load(k_ptr + b * skb + hk * skh + cols[:, None] * skn + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(v_ptr + b * svb + hk * svh + cols[:, None] * svn + offs_d[None, :], mask=kv_mask, other=0.0)
    key_ok = keys_kept(kpm_ptr, b, Sk, cols, col_ok, HAS_KPM)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    lo, hi = query_range(n_start, Sq, Sk, offset, window_left, window_right,
                          IS_CAUSAL, HAS_WL, HAS_WR, BLOCK_M, BLOCK_N)
    for g in range(0, group):
        h = hk * group + g
        q_base = q_ptr + b * sqb + h * sqh
        do_base = do_ptr + b * sdb + h * sdh
        pad_base = (b * heads + h) * sq_pad
        slope2 = alibi_slope2(slopes_ptr, b, heads, h, HAS_ALIBI)
        for m_start in range(lo, hi, BLOCK_M):
            rows = m_start + offs_m
            row_ok = rows < Sq
            qt = tl.load(q_base + rows[None, :] * sqm + offs_d[:, None],
                         mask=row_ok[None, :] & d_ok[:, None], other=0.0)
            qk_t = tl.dot(k, qt, input_precision=PRECISION)  # (keys, queries)
            s_t, t_t = scores(qk_t, rows[None, :], cols[:, None], key_ok[:, None], slope2, Sq, Sk,
                              offset, window_left, window_right, qk_scale, cap_in, cap_out,
                              IS_CAUSAL, HAS_WL, HAS_WR, HAS_SOFTCAP, HAS_ALIBI, HAS_KPM)
            lse2 = tl.load(lse2_ptr + pad_base + rows)
            p_t = tl.exp2(s_t - lse2[None, :])
            do = tl.load(do_base + rows[:, None] * sdm + offs_d[None, :],
                         mask=row_ok[:, None] & d_ok[None, :], other=0.0)
            dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            delta = tl.load(delta_ptr + pad_base + rows)
            ds_t = p_t * (dp_t - delta[None, :])
            if HAS_SOFTCAP:
                ds_t = ds_t * (1.0 - t_t * t_t)
            dk += tl.dot(ds_t.to(qt.dtype), tl.trans(qt), input_precision=PRECISION)

    # dk/dv are contiguous (B, Hkv, Sk, D)
    out_offs = (b * heads_kv + hk) * Sk * head_dim + cols[:, None] * head_dim + offs_d[None, :]
    tl.store(dk_ptr + out_offs, (dk * scale).to(dk_ptr.dtype.element_ty), mask=kv_mask)
    tl.store(dv_ptr + out_offs, dv.to(dv_ptr.dtype.element_ty), mask=kv_mask)


_DQ_TILES = TileTable(
    by_head_dim={
        64: [(64, 64, 4, 2), (128, 64, 8, 2), (64, 32, 4, 2), (128, 32, 4, 2)],
        128: [(64, 64, 4, 2), (128, 64, 8, 2), (64, 32, 4, 2), (64, 64, 8, 2)],
        256: [(128, 32, 8, 2), (64, 32, 4, 2), (32, 32, 4, 2)],
    },
    not_on={  # make cuda-check: shared memory past the card, or spills where another tile does not
        (80, "16bit", 64): [(64, 64, 4, 2), (128, 32, 4, 2), (128, 64, 8, 2)],
        (80, "16bit", 128): [(64, 64, 4, 2), (128, 64, 8, 2)],
        (80, "16bit", 256): [(64, 32, 4, 2), (128, 32, 8, 2)],
        (80, "fp32", 128): [(128, 64, 8, 2)],
        (80, "fp32", 256): [(64, 32, 4, 2), (128, 32, 8, 2)],
        (90, "16bit", 256): [(64, 32, 4, 2)],
        (90, "fp32", 64): [(128, 32, 4, 2)],
        (90, "fp32", 128): [(64, 64, 8, 2), (128, 64, 8, 2)],
        (90, "fp32", 256): [(64, 32, 4, 2), (128, 32, 8, 2)],
    },
)


@triton.jit
def _attn_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse2_ptr, delta_ptr, dq_ptr, slopes_ptr, kpm_ptr,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdb, sdh, sdm,
    heads, group, Sq, Sk, head_dim, offset, window_left, window_right,
    scale, qk_scale, cap_in, cap_out, sq_bucket, sk_bucket, sq_pad,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_KPM: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # dQ walks the same band of key blocks as the forward: the same set-up and scores.
    b, h, hk, m_start, rows, row_ok, offs_d, d_ok = query_tile(heads, group, Sq, head_dim, BLOCK_M, BLOCK_D)
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(q_ptr + b * sqb + h * sqh + rows[:, None] * sqm + offs_d[None, :], mask=q_mask, other=0.0)
    do = tl.load(do_ptr + b * sdb + h * sdh + rows[:, None] * sdm + offs_d[None, :], mask=q_mask, other=0.0)
    pad_base = (b * heads + h) * sq_pad
    lse2 = tl.load(lse2_ptr + pad_base + rows)
    delta = tl.load(delta_ptr + pad_base + rows)
    k_base = k_ptr + b * skb + hk * skh
    v_base = v_ptr + b * svb + hk * svh
    slope2 = alibi_slope2(slopes_ptr, b, heads, h, HAS_ALIBI)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, hi = key_range(m_start, Sq, Sk, offset, window_left, window_right,
                       IS_CAUSAL, HAS_WL, HAS_WR, BLOCK_M, BLOCK_N)
    for n_start in range(lo, hi, BLOCK_N):
        cols = n_start + tl.arange(0, BLOCK_N)
        s, t, kt = query_block_scores(
            q, k_base, skn, kpm_ptr, b, rows, cols, offs_d, d_ok, slope2, Sq, Sk, offset,
            window_left, window_right, qk_scale, cap_in, cap_out,
            IS_CAUSAL, HAS_WL, HAS_WR, HAS_SOFTCAP, HAS_ALIBI, HAS_KPM, PRECISION,
        )
        vt = tl.load(v_base + cols[None, :] * svn + offs_d[:, None],
                     mask=(cols < Sk)[None, :] & d_ok[:, None], other=0.0)
        p = tl.exp2(s - lse2[:, None])
        dp = tl.dot(do, vt, input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        if HAS_SOFTCAP:
            ds = ds * (1.0 - t * t)
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=PRECISION)

    dq_offs = (b * heads + h) * Sq * head_dim + rows[:, None] * head_dim + offs_d[None, :]
    tl.store(dq_ptr + dq_offs, (dq * scale).to(dq_ptr.dtype.element_ty), mask=q_mask)


def attention_backward(q, k, v, out, dout, lse, dq, dk, dv, scale, causal, window_left,
                       window_right, softcap, alibi_slopes, key_padding_mask) -> None:
    """Same contract as csrc/attention/attention.h: writes contiguous dq, dk, dv in place. The op
    answers empty problems itself (no queries or no keys), so every dimension here is positive."""
    batch, heads, sq, head_dim = q.shape
    heads_kv, sk = k.shape[1], k.shape[2]
    slopes, kpm, scalars, flags = score_args(scale, softcap, alibi_slopes, key_padding_mask, q)
    # Delta/lse2 rows padded to a multiple of every BLOCK_M (at most 128) of the tile lists
    sq_pad = triton.cdiv(sq, 128) * 128
    common = dict(
        sq_bucket=seq_bucket(sq), sk_bucket=seq_bucket(sk), sq_pad=sq_pad, scale=float(scale),
        **scalars, **flags, **mask_flags(causal, window_left, window_right),
        PRECISION=dot_precision(q.dtype), BLOCK_D=block_d(head_dim),
    )
    strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2), dout.stride(0), dout.stride(1), dout.stride(2))
    bands = (sq, sk, head_dim, sk - sq, int(window_left), int(window_right))

    with device_guard(q):
        delta = torch.empty((batch, heads, sq_pad), dtype=torch.float32, device=q.device)
        lse2 = torch.empty_like(delta)
        block_m = 16 if q.device.type == "cpu" else PREP_BLOCK_M
        _attn_bwd_prep_kernel[(triton.cdiv(sq_pad, block_m), batch * heads)](
            out, dout, lse, delta, lse2, out.stride(0), out.stride(1), out.stride(2),
            dout.stride(0), dout.stride(1), dout.stride(2), heads, sq, sq_pad, head_dim,
            BLOCK_M=block_m, BLOCK_D=block_d(head_dim),
        )

        def grid_kv(meta):
            return (triton.cdiv(sk, meta["BLOCK_N"]), batch * heads_kv)

        launch(
            _attn_bwd_dkdv_kernel, _DKDV_TILES, grid_kv,
            q, k, v, dout, lse2, delta, dk, dv, slopes, kpm, *strides,
            heads, heads_kv, heads // heads_kv, *bands, **common,
        )

        def grid_q(meta):
            return (triton.cdiv(sq, meta["BLOCK_M"]), batch * heads)

        launch(
            _attn_bwd_dq_kernel, _DQ_TILES, grid_q,
            q, k, v, dout, lse2, delta, dq, slopes, kpm, *strides,
            heads, heads // heads_kv, *bands, **common,
        )
