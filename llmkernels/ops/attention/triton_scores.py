"""``@triton.jit`` helpers shared by the attention kernels (forward, dK/dV, dQ): the score
function with its masks, the band of blocks a block can reach, and the per-program set-up.

Scores are kept in the log2 domain (log2(e) folded into the scale) so that the softmax uses exp2.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def scores(
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
def key_range(
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
def query_range(
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


@triton.jit
def query_tile(heads, group, Sq, head_dim, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """The query block and head this program owns (grid: query blocks x batch * heads_q):
    (b, h, hk, m_start, rows, row_ok, offs_d, d_ok), hk the key/value head of h's GQA group."""
    bh = tl.program_id(1)
    b = (bh // heads).to(tl.int64)
    h = (bh % heads).to(tl.int64)
    m_start = tl.program_id(0) * BLOCK_M
    rows = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    return b, h, h // group, m_start, rows, rows < Sq, offs_d, offs_d < head_dim


@triton.jit
def alibi_slope2(slopes_ptr, b, heads, h, HAS_ALIBI: tl.constexpr):
    """Head h's ALiBi slope in log2 units (0 without ALiBi); slopes are float32 (B, Hq)."""
    slope2 = 0.0
    if HAS_ALIBI:
        slope2 = tl.load(slopes_ptr + b * heads + h) * 1.4426950408889634
    return slope2


@triton.jit
def keys_kept(kpm_ptr, b, Sk, cols, col_ok, HAS_KPM: tl.constexpr):
    """Which keys of the block a query may attend: in range and, with a padding mask, True there."""
    if HAS_KPM:
        key_ok = tl.load(kpm_ptr + b * Sk + cols, mask=col_ok, other=0) != 0
    else:
        key_ok = col_ok
    return key_ok


@triton.jit
def query_block_scores(
    q, k_base, skn, kpm_ptr, b, rows, cols, offs_d, d_ok, slope2, Sq, Sk, offset,
    window_left, window_right, qk_scale, cap_in, cap_out,
    IS_CAUSAL: tl.constexpr, HAS_WL: tl.constexpr, HAS_WR: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_KPM: tl.constexpr, PRECISION: tl.constexpr,
):
    """Scores s and tanh terms t (see ``scores``) of the query tile q (BLOCK_M, D) against the key
    block ``cols``, and that block of K transposed (D, BLOCK_N), which the dQ kernel reuses."""
    col_ok = cols < Sk
    kt = tl.load(k_base + cols[None, :] * skn + offs_d[:, None], mask=col_ok[None, :] & d_ok[:, None], other=0.0)
    qk = tl.dot(q, kt, input_precision=PRECISION)
    key_ok = keys_kept(kpm_ptr, b, Sk, cols, col_ok, HAS_KPM)
    s, t = scores(qk, rows[:, None], cols[None, :], key_ok[None, :], slope2, Sq, Sk, offset,
                  window_left, window_right, qk_scale, cap_in, cap_out,
                  IS_CAUSAL, HAS_WL, HAS_WR, HAS_SOFTCAP, HAS_ALIBI, HAS_KPM)
    return s, t, kt
