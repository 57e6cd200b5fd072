"""Triton kernels for fused (flash) attention (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

Contract: csrc/attention/attention.h. This file holds the score function shared by every kernel,
the FlashAttention-2 forward and its launcher; the backward lives in triton_backward.py.

Scores are kept in the log2 domain (log2(e) folded into the scale) so that the softmax uses exp2.
A query block only visits the key blocks its causal/window band can reach. Rows that see no key
keep a running max of -inf; the max is replaced by 0 before subtracting so that no -inf - -inf
turns into NaN, and such rows end with out = 0 and lse = -inf.
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_LOG2E = 1.4426950408889634


def dot_precision(dtype: torch.dtype) -> str:
    """Input precision for tl.dot: IEEE fp32 unless torch allows tf32 (16-bit inputs ignore it)."""
    if dtype != torch.float32:
        return "tf32"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if tf32 else "ieee"


def seq_bucket(n: int) -> int:
    """Autotune key for a sequence length: powers of two, so varying lengths do not retune each call."""
    return triton.next_power_of_2(max(int(n), 1))


def block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def score_args(scale, softcap, alibi_slopes, key_padding_mask, q):
    """Flags and scalars shared by every kernel launch; dummy pointers for absent tensors."""
    has_softcap = softcap is not None and softcap > 0
    slopes = alibi_slopes if alibi_slopes is not None else q
    kpm = key_padding_mask.view(torch.uint8) if key_padding_mask is not None else q
    scalars = dict(
        qk_scale=float(scale) * _LOG2E,
        cap_in=float(scale) / float(softcap) if has_softcap else 0.0,
        cap_out=float(softcap) * _LOG2E if has_softcap else 0.0,
    )
    flags = dict(
        HAS_SOFTCAP=has_softcap,
        HAS_ALIBI=alibi_slopes is not None,
        HAS_KPM=key_padding_mask is not None,
    )
    return slopes, kpm, scalars, flags


def mask_flags(causal, window_left, window_right):
    return dict(IS_CAUSAL=bool(causal), HAS_WL=window_left >= 0, HAS_WR=window_right >= 0)


@triton.jit
def _scores(
    qk, q_idx, k_idx, key_ok, slope2, Sq, Sk, offset, window_left, window_right,
    qk_scale, cap_in, cap_out,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_KPM: tl.constexpr,
):
    """Final scores times log2(e), -inf where masked; q_idx/k_idx broadcast to qk's layout.

    Also returns t = tanh(scale * qk / softcap) (the softcap backward needs 1 - t^2); qk if off.
    """
    if HAS_SOFTCAP:
        x = qk * cap_in
        e = tl.exp2(-2.8853900817779268 * tl.abs(x))  # exp(-2|x|), never overflows
        t = (1.0 - e) / (1.0 + e)
        t = tl.where(x < 0, -t, t)
        s = t * cap_out
    else:
        t = qk
        s = qk * qk_scale
    diag = q_idx + offset  # the key bottom-right aligned with query i
    if HAS_ALIBI:
        s = s - slope2 * tl.abs(diag - k_idx).to(tl.float32)
    ok = (k_idx < Sk) & (q_idx < Sq)
    if IS_CAUSAL:
        ok = ok & (k_idx <= diag)
    if HAS_WL:
        ok = ok & (k_idx >= diag - window_left)
    if HAS_WR:
        ok = ok & (k_idx <= diag + window_right)
    if HAS_KPM:
        ok = ok & key_ok
    s = tl.where(ok, s, float("-inf"))
    return s, t


@triton.jit
def _key_range(
    m_start, Sq, Sk, offset, window_left, window_right,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """[lo, hi) of keys any row of the query block [m_start, m_start + BLOCK_M) may see."""
    lo = m_start * 0
    hi = lo + Sk
    last_diag = tl.minimum(m_start + BLOCK_M, Sq) - 1 + offset
    if IS_CAUSAL:
        hi = tl.minimum(hi, last_diag + 1)
    if HAS_WR:
        hi = tl.minimum(hi, last_diag + window_right + 1)
    if HAS_WL:
        lo = tl.maximum(lo, m_start + offset - window_left)
    lo = (lo // BLOCK_N) * BLOCK_N
    return lo, hi


@triton.jit
def _query_range(
    n_start, Sq, Sk, offset, window_left, window_right,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """[lo, hi) of queries that may see any key of the block [n_start, n_start + BLOCK_N)."""
    lo = n_start * 0
    hi = lo + Sq
    if IS_CAUSAL:
        lo = tl.maximum(lo, n_start - offset)
    if HAS_WR:
        lo = tl.maximum(lo, n_start - offset - window_right)
    if HAS_WL:
        hi = tl.minimum(hi, tl.minimum(n_start + BLOCK_N, Sk) - offset + window_left)
    lo = (lo // BLOCK_M) * BLOCK_M
    return lo, hi


_AUTOTUNE_KEY = [
    "sq_bucket", "sk_bucket", "BLOCK_D", "IS_CAUSAL", "HAS_WL", "HAS_WR",
    "HAS_SOFTCAP", "HAS_ALIBI", "HAS_KPM", "PRECISION",
]


# IEEE fp32 dots run on FMA units, not tensor cores: large tiles there spill heavily, small ones not.
_IEEE_TILES = {
    64: [(32, 32, 4, 2), (16, 32, 4, 2)],
    128: [(32, 32, 4, 2), (16, 32, 4, 2)],
    256: [(16, 32, 4, 1), (16, 16, 4, 1)],
}


def autotune_configs(by_head_dim):
    """The union of the per-head-dim tile lists (and the IEEE fp32 ones) as autotuner configs.

    by_head_dim maps the largest BLOCK_D a list serves (64, 128, 256) to (BLOCK_M, BLOCK_N, warps,
    stages) tiles chosen from sm80/sm90 compiles (few or no register spills, shared memory within
    bounds).
    """
    tiles = dict.fromkeys(t for lists in (by_head_dim, _IEEE_TILES) for ts in lists.values() for t in ts)
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in tiles]


def head_dim_prune(by_head_dim):
    """Benchmark only the tiles listed for this BLOCK_D and dot precision (see autotune_configs)."""

    def prune(configs_, named_args, **kwargs):
        d = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
        ieee = kwargs.get("PRECISION", named_args.get("PRECISION")) == "ieee"
        lists = _IEEE_TILES if ieee else by_head_dim
        tiles = lists[min((k for k in lists if k >= d), default=max(lists))]
        kept = [
            c for c in configs_
            if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in tiles
        ]
        return kept or configs_[-1:]

    return prune


_TUNED = {}


def launch(kernel, by_head_dim, grid, *args, **kwargs):
    """Run kernel[grid]: under the interpreter with one 16x16 tile (tests stay fast), on a GPU
    through an autotuner built at the first launch (Triton 3.2 builds one only with an active
    driver, so building it at import would break importing on a machine without a GPU)."""
    if _INTERPRET:
        kernel[grid](*args, BLOCK_M=16, BLOCK_N=16, **kwargs)
        return
    tuned = _TUNED.get(kernel)
    if tuned is None:
        tuned = _TUNED[kernel] = triton.autotune(
            configs=autotune_configs(by_head_dim),
            key=_AUTOTUNE_KEY,
            prune_configs_by={"early_config_prune": head_dim_prune(by_head_dim)},
        )(kernel)
    tuned[grid](*args, **kwargs)


def device_guard(t):
    """Triton launches on the current CUDA device: make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


_FWD_TILES = {
    64: [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 32, 4, 2)],
    128: [(128, 64, 8, 3), (128, 64, 8, 2), (64, 64, 8, 3), (128, 32, 8, 2), (64, 32, 4, 2)],
    256: [(64, 32, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2)],
}


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
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // heads).to(tl.int64)
    h = (bh % heads).to(tl.int64)
    hk = h // group
    m_start = pid_m * BLOCK_M
    rows = m_start + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < head_dim
    row_ok = rows < Sq

    q = tl.load(
        q_ptr + b * sqb + h * sqh + rows[:, None] * sqm + offs_d[None, :],
        mask=row_ok[:, None] & d_ok[None, :], other=0.0,
    )
    k_base = k_ptr + b * skb + hk * skh
    v_base = v_ptr + b * svb + hk * svh
    slope2 = 0.0
    if HAS_ALIBI:
        slope2 = tl.load(slopes_ptr + b * heads + h) * 1.4426950408889634

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, hi = _key_range(m_start, Sq, Sk, offset, window_left, window_right,
                        IS_CAUSAL, HAS_WL, HAS_WR, BLOCK_M, BLOCK_N)
    for n_start in range(lo, hi, BLOCK_N):
        cols = n_start + offs_n
        col_ok = cols < Sk
        kt = tl.load(k_base + cols[None, :] * skn + offs_d[:, None],
                     mask=col_ok[None, :] & d_ok[:, None], other=0.0)
        qk = tl.dot(q, kt, input_precision=PRECISION)
        if HAS_KPM:
            key_ok = tl.load(kpm_ptr + b * Sk + cols, mask=col_ok, other=0) != 0
        else:
            key_ok = col_ok
        s, t = _scores(qk, rows[:, None], cols[None, :], key_ok[None, :], slope2, Sq, Sk, offset,
                       window_left, window_right, qk_scale, cap_in, cap_out,
                       IS_CAUSAL, HAS_WL, HAS_WR, HAS_SOFTCAP, HAS_ALIBI, HAS_KPM)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * svn + offs_d[None, :],
                    mask=col_ok[:, None] & d_ok[None, :], other=0.0)
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
    """Same contract as csrc/attention/attention.h: writes out and lse in place."""
    batch, heads, sq, head_dim = q.shape
    heads_kv, sk = k.shape[1], k.shape[2]
    if batch * heads * sq == 0:
        return
    if sk == 0:
        out.zero_()
        lse.fill_(float("-inf"))
        return
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
