"""Triton kernels of the top-k teacher (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1): the
top-k distillation rows (contract: csrc/distillation/distillation.h) and ``topk_logprobs``.

Selection (``topk_logprobs``): each column becomes one int64 key, its raw logit's bits mapped to
an order-preserving int32 in the high half and (2^32 - 1 - id) in the low half, so keys are
distinct, larger is better and equal logits rank the smaller id first. The softcap and the
temperature are strictly increasing, so the raw logits rank the columns exactly as the reference's
log-probabilities do, without the ties that rounding the capped values would add. A program keeps
the best KCHUNK keys of its row in registers: a block's best KCHUNK come from a sort and a
max over the sorted block folded to (BLOCK / KCHUNK, KCHUNK) (row 0 is the largest); merging
with the running best is the same fold of the two joined. Blocks whose best key cannot enter are
skipped. k > KCHUNK runs ceil(k / KCHUNK) rounds, each over the keys below the last one chosen.

Top-k rows: the student's mass outside the teacher's ids (the tail bucket) is S - S_ids, both
sums of the same float32 terms exp(z / T - max) in float64, exact to ~1e-16 S. When the tail holds
less than TAIL_EXACT of the mass that difference would lose digits, and the row takes an exact
pass instead: every column tested against every id, the tail's own (max, sum). The gradient goes
in three steps split by barriers (grad may be the student itself): the teacher's ids' gradients
into a (N, k) float32 scratch, the tail's gradient into every column, then the ids' from the
scratch over theirs.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from llmkernels.ops.cross_entropy.triton_kernels import (
    _INTERPRET_MAX_BLOCK, MAX_BLOCK, _logit_block, _softcap, launch_config,
)
from llmkernels.ops.distillation import reference
from llmkernels.ops.distillation.triton_kernels import _log_mix, _row_target, _store_hard, _weighted, kl_mode

TEACHER_TAIL_FLOOR = tl.constexpr(reference.TEACHER_TAIL_FLOOR)  # the teacher's tail mass, never 0
TAIL_EXACT = 1e-5  # the tail's share of S below which the rows take the exact pass (see above)
MAX_KCHUNK = 256   # the most keys a selection round keeps in registers
INTERPRET_MAX_KCHUNK = 16  # under the interpreter: a small k already takes several rounds
ID_BLOCK = 64      # teacher ids per step of the row kernel's loops over them
_LOW = tl.constexpr(0xFFFFFFFF)
_MAX_LOG = tl.constexpr(12)  # the widest sort: 2^12 keys (a 2048-key block; 2 x MAX_KCHUNK)
_SUB = tl.constexpr(128)  # columns per step of the exact tail pass (a _SUB x ID_BLOCK comparison)


# ---- topk_logprobs ------------------------------------------------------------------------------


@triton.jit
def _keys(x, c):
    """Sortable int64 keys of float32 logits x at columns c (see the module docstring)."""
    bits = x.to(tl.int32, bitcast=True)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 32) | (c.to(tl.int64) ^ _LOW)


@triton.jit
def _sort_descending(keys, SIZE: tl.constexpr, ROWS: tl.constexpr):
    """Each row of (ROWS, SIZE) keys sorted largest first: a bitonic network whose compare-swaps
    are a min and a max over the pair axis of a reshape (tl.sort's own swap reduces with a custom
    combine, which the interpreter runs element by element in Python)."""
    col = tl.arange(0, SIZE)[None, :]
    for stage in tl.static_range(1, _MAX_LOG + 1):
        if (1 << stage) <= SIZE:
            for step in tl.static_range(stage):
                # partners 2^(stage - 1 - step) apart: the pair axis of a (ROWS, -, 2, 2^(...)) view
                pairs = tl.reshape(keys, (ROWS, SIZE >> (stage - step), 2, 1 << (stage - 1 - step)))
                lo = tl.min(pairs, axis=2, keep_dims=True)
                hi = tl.max(pairs, axis=2, keep_dims=True)
                # runs of 2^stage alternate direction; the last stage (bit 0 everywhere) descends
                at = tl.reshape(col, (1, SIZE >> (stage - step), 2, 1 << (stage - 1 - step)))
                descending = ((at >> stage) & 1) == 0
                right = ((at >> (stage - 1 - step)) & 1) == 1
                keys = tl.reshape(tl.where(right == descending, lo, hi), (ROWS, SIZE))
    return keys


@triton.jit
def _best(keys, SIZE: tl.constexpr, KCHUNK: tl.constexpr, ROWS: tl.constexpr):
    """The KCHUNK largest of each row's SIZE keys, largest first."""
    ordered = _sort_descending(keys, SIZE, ROWS)
    return tl.max(tl.reshape(ordered, (ROWS, SIZE // KCHUNK, KCHUNK)), axis=1)


@triton.jit
def _topk_logprobs_kernel(x_ptr, ids_ptr, out_ptr, N, V, K, x_stride, inv_t, softcap,
                          HAS_SOFTCAP: tl.constexpr, KCHUNK: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr):
    """ROWS rows per program (1 on a GPU; the interpreter runs one program's sorts for many rows)."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    x_rows = x_ptr + rows[:, None] * x_stride
    row_ok = (rows < N)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    m = tl.full([ROWS], float("-inf"), tl.float32)
    s = tl.zeros([ROWS], tl.float32)
    for start in range(0, V, BLOCK):
        mask = row_ok & (start + cols < V)
        z = tl.load(x_rows + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            z, _unused = _softcap(z, softcap, False)
        y = tl.where(mask, z * inv_t, float("-inf"))
        m_new = tl.maximum(m, tl.max(y, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows past N
        s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(y - m_safe[:, None]), axis=1)
        m = m_new
    log_s = tl.log(s)

    lowest = tl.full([ROWS, KCHUNK], -(2**63), tl.int64)
    j = tl.arange(0, KCHUNK)[None, :]
    bound = tl.full([ROWS, 1], 2**63 - 1, tl.int64)
    for first in range(0, K, KCHUNK):
        best = lowest
        for start in range(0, V, BLOCK):
            mask = row_ok & (start + cols < V)
            x = tl.load(x_rows + start + cols, mask=mask, other=0.0).to(tl.float32)
            keys = _keys(x, start + cols)
            keys = tl.where(mask & ((first == 0) | (keys < bound)), keys, -(2**63))
            entering = tl.max(keys, axis=1) > tl.min(best, axis=1)
            if tl.max(entering.to(tl.int32), axis=0) > 0:
                top = _best(keys, BLOCK, KCHUNK, ROWS)
                best = _best(tl.reshape(tl.join(best, top), (ROWS, 2 * KCHUNK)), 2 * KCHUNK, KCHUNK, ROWS)
        bound = tl.min(best, axis=1)[:, None]
        ids = ((best & _LOW) ^ _LOW).to(tl.int32)
        out = row_ok & (first + j < K)
        x = tl.load(x_rows + ids, mask=out, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            x, _unused = _softcap(x, softcap, False)
        at = rows[:, None] * K + first + j
        tl.store(ids_ptr + at, ids, mask=out)
        tl.store(out_ptr + at, (x * inv_t - m[:, None]) - log_s[:, None], mask=out)


def _is_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def topk_logprobs_config(classes: int, k: int, max_block: int = MAX_BLOCK,
                         max_kchunk: int = MAX_KCHUNK) -> tuple[int, int, int]:
    """(KCHUNK, BLOCK, num_warps) of a topk_logprobs launch (also what triton_cases.py compiles):
    a block holds 2048 keys at most (a sort of int64 keys in registers)."""
    kchunk = min(triton.next_power_of_2(k), max_kchunk)
    block = max(kchunk, min(triton.next_power_of_2(classes), max_block // 2))
    return kchunk, block, min(8, max(1, block // 256))


def topk_logprobs(logits, k, temperature, softcap, ids, logprobs) -> None:
    """ids (N, k) int32 and logprobs (N, k) float32 of logits (N, V), written in place."""
    n, v = logits.shape
    if n == 0:
        return
    if _is_interpreted():  # small blocks and rounds, every row in one program: the interpreter's sorts are slow
        kchunk, block, warps = topk_logprobs_config(v, k, _INTERPRET_MAX_BLOCK // 4, INTERPRET_MAX_KCHUNK)
        rows = triton.next_power_of_2(n)
    else:
        (kchunk, block, warps), rows = topk_logprobs_config(v, k), 1
    has_softcap = softcap is not None and float(softcap) > 0.0
    _topk_logprobs_kernel[(triton.cdiv(n, rows),)](
        logits, ids, logprobs, n, v, k, logits.stride(0), 1.0 / temperature, float(softcap) if has_softcap else 1.0,
        HAS_SOFTCAP=has_softcap, KCHUNK=kchunk, BLOCK=block, ROWS=rows, num_warps=warps,
    )


# ---- top-k distillation rows --------------------------------------------------------------------


@triton.jit
def _id_block(s_row, ids_row, lp_row, j0, jj, K, Vs, inv_t, softcap, HAS_SOFTCAP: tl.constexpr):
    """Teacher slots j0 + jj < K: mask, ids (0 past K), teacher log-probs b (0 past K), the
    student's capped logits z there and dz/dx. An id out of range reads nothing (the row turns
    NaN: see the kernel)."""
    j = j0 + jj
    mask = j < K
    ids = tl.load(ids_row + j, mask=mask, other=0)
    b = tl.load(lp_row + j, mask=mask, other=0.0)
    z = tl.load(s_row + ids, mask=mask & (ids >= 0) & (ids < Vs), other=0.0).to(tl.float32)
    dz = 1.0
    if HAS_SOFTCAP:
        z, dz = _softcap(z, softcap, True)
    return mask, ids, b, z, dz


@triton.jit
def _slope(a, b, kl, mass, log_beta, log_rest, MODE: tl.constexpr):
    """d soft / d(scaled logit) per unit of p for buckets of log-masses a (student), b (teacher):
    R - r / q (forward KL), log q - log r - KL, log q - log m - KL(q || m) (JSD; (1 - beta) apart)."""
    if MODE == 0:
        h = mass - tl.where(b == float("-inf"), 0.0, tl.exp(b - a))
    elif MODE == 1:
        h = (a - b) - kl
    else:
        h = (a - _log_mix(b + log_beta, a + log_rest)) - kl
    return h


@triton.jit
def _terms(a, b, beta, log_beta, log_rest, MODE: tl.constexpr):
    """(divergence terms, student-vs-mixture terms) of buckets with log-masses a, b."""
    p = tl.exp(a)
    r = tl.exp(b)
    if MODE == 0:
        loss = _weighted(r, b - a)
        term_s = loss
    elif MODE == 1:
        loss = _weighted(p, a - b)
        term_s = loss
    else:
        lm = _log_mix(b + log_beta, a + log_rest)
        term_s = _weighted(p, a - lm)
        loss = beta * _weighted(r, b - lm) + (1.0 - beta) * term_s
    return loss, term_s


@triton.jit
def _topk_rows_kernel(
    s_ptr, ids_ptr, lp_ptr, target_ptr, soft_ptr, hard_ptr, grad_ptr, scratch_ptr,
    Vs, K, s_stride, ignore_index, inv_t, soft_factor, beta, log_beta, log_rest, softcap, c_soft, c_hard, tail_exact,
    HAS_TARGET: tl.constexpr, HAS_GRAD: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_TAIL: tl.constexpr,
    MODE: tl.constexpr, BLOCK: tl.constexpr, KBLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    s_row = s_ptr + row * s_stride
    ids_row = ids_ptr + row * K
    lp_row = lp_ptr + row * K
    cols = tl.arange(0, BLOCK)
    jj = tl.arange(0, KBLOCK)
    t_safe, keep = _row_target(target_ptr, row, ignore_index, HAS_TARGET)

    # the max of z / T; the hard part's online (max, sum) of z
    ms = tl.full([], float("-inf"), tl.float32)
    mh = tl.full([], float("-inf"), tl.float32)
    sh = tl.zeros([], tl.float32)
    for start in range(0, Vs, BLOCK):
        c, mask, z, _unused = _logit_block(s_row, start, cols, Vs, softcap, HAS_SOFTCAP, False)
        ms = tl.maximum(ms, tl.max(tl.where(mask, z * inv_t, float("-inf")), axis=0))
        if HAS_TARGET:
            zh = tl.where(mask, z, float("-inf"))
            m_new = tl.maximum(mh, tl.max(zh, axis=0))
            sh = sh * tl.exp(mh - m_new) + tl.sum(tl.exp(zh - m_new), axis=0)
            mh = m_new
    total = tl.zeros([], tl.float64)
    for start in range(0, Vs, BLOCK):
        c, mask, z, _unused = _logit_block(s_row, start, cols, Vs, softcap, HAS_SOFTCAP, False)
        total += tl.sum(tl.where(mask, tl.exp(z * inv_t - ms), 0.0).to(tl.float64), axis=0)
    chosen = tl.zeros([], tl.float64)
    bad_ids = tl.zeros([], tl.int32)
    teacher_mass = tl.zeros([], tl.float64)
    for j0 in range(0, K, KBLOCK):
        mask, ids, b, z, dz = _id_block(s_row, ids_row, lp_row, j0, jj, K, Vs, inv_t, softcap, HAS_SOFTCAP)
        chosen += tl.sum(tl.where(mask, tl.exp(z * inv_t - ms), 0.0).to(tl.float64), axis=0)
        teacher_mass += tl.sum(tl.where(mask, tl.exp(b.to(tl.float64)), 0.0), axis=0)
        bad_ids += tl.sum((mask & ((ids < 0) | (ids >= Vs))).to(tl.int32), axis=0)
    # ids are range-checked on the host for CPU tensors only: on a GPU a bad one makes the row NaN
    keep = tl.where(bad_ids > 0, float("nan"), keep)
    log_s = tl.log(total.to(tl.float32))

    lq_tail = tl.zeros([], tl.float32)
    lr_tail = tl.zeros([], tl.float32)
    if HAS_TAIL:
        rest = total - chosen
        if rest > tail_exact * total:
            lq_tail = tl.log(rest / total).to(tl.float32)
        else:  # the exact pass: the tail's own (max, sum) over the columns no id names
            mr = tl.full([], float("-inf"), tl.float32)
            sr = tl.zeros([], tl.float32)
            sub = tl.arange(0, _SUB)
            for start in range(0, Vs, _SUB):
                c, mask, z, _unused = _logit_block(s_row, start, sub, Vs, softcap, HAS_SOFTCAP, False)
                named = tl.zeros([_SUB], tl.int32)
                for j0 in range(0, K, KBLOCK):
                    ids = tl.load(ids_row + j0 + jj, mask=j0 + jj < K, other=-1)
                    named = tl.maximum(named, tl.max((c[:, None] == ids[None, :]).to(tl.int32), axis=1))
                y = tl.where(mask & (named == 0), z * inv_t, float("-inf"))
                m_new = tl.maximum(mr, tl.max(y, axis=0))
                sr = sr * tl.exp(mr - m_new) + tl.sum(tl.exp(y - m_new), axis=0)
                mr = m_new
            lq_tail = ((mr - ms) + tl.log(sr)) - log_s
        r_tail = 1.0 - teacher_mass
        lr_tail = tl.log(tl.maximum(r_tail, TEACHER_TAIL_FLOOR)).to(tl.float32)  # never -inf (reference.py)

    loss = tl.zeros([], tl.float32)
    student_kl = tl.zeros([], tl.float32)
    for j0 in range(0, K, KBLOCK):
        mask, ids, b, z, dz = _id_block(s_row, ids_row, lp_row, j0, jj, K, Vs, inv_t, softcap, HAS_SOFTCAP)
        a = tl.where(mask, (z * inv_t - ms) - log_s, 0.0)
        term, term_s = _terms(a, tl.where(mask, b, 0.0), beta, log_beta, log_rest, MODE)
        loss += tl.sum(tl.where(mask, term, 0.0), axis=0)
        student_kl += tl.sum(tl.where(mask, term_s, 0.0), axis=0)
    if HAS_TAIL:
        term, term_s = _terms(lq_tail, lr_tail, beta, log_beta, log_rest, MODE)
        loss += term
        student_kl += term_s
    tl.store(soft_ptr + row, keep * soft_factor * loss)

    log_sh = tl.log(sh)
    _store_hard(hard_ptr, row, s_row, t_safe, keep, mh, log_sh, softcap, HAS_TARGET, HAS_SOFTCAP)

    if HAS_GRAD:
        # the buckets' mass R of the teacher (with the tail: max(R, 1)), and the soft factor
        mass = teacher_mass.to(tl.float32)
        if HAS_TAIL:
            mass = tl.maximum(mass, 1.0)
        c_mode = c_soft
        if MODE == 2:
            c_mode = c_soft * (1.0 - beta)
        g_row = grad_ptr + row * Vs
        scratch_row = scratch_ptr + row * K
        for j0 in range(0, K, KBLOCK):
            mask, ids, b, z, dz = _id_block(s_row, ids_row, lp_row, j0, jj, K, Vs, inv_t, softcap, HAS_SOFTCAP)
            a = (z * inv_t - ms) - log_s
            p = tl.exp(a)
            if MODE == 0:
                g = (p * mass - tl.exp(b)) * c_mode  # p (R - r / q) without the ratio
            else:
                g = _weighted(p, _slope(a, b, student_kl, mass, log_beta, log_rest, MODE)) * c_mode
            if HAS_TARGET:
                g += c_hard * (tl.exp((z - mh) - log_sh) - tl.where(ids == t_safe, 1.0, 0.0))
            if HAS_SOFTCAP:
                g = g * dz
            tl.store(scratch_row + j0 + jj, g * keep, mask=mask)
        tl.debug_barrier()  # every read of the student is done before grad (maybe the student) is written
        h_tail = 0.0
        if HAS_TAIL:
            h_tail = _slope(lq_tail, lr_tail, student_kl, mass, log_beta, log_rest, MODE) * c_mode
        for start in range(0, Vs, BLOCK):
            c, mask, z, dz = _logit_block(s_row, start, cols, Vs, softcap, HAS_SOFTCAP, True)
            g = tl.zeros([BLOCK], tl.float32)
            if HAS_TAIL:
                g = _weighted(tl.exp((z * inv_t - ms) - log_s), h_tail)
            if HAS_TARGET:
                g += c_hard * (tl.exp((z - mh) - log_sh) - tl.where(c == t_safe, 1.0, 0.0))
            if HAS_SOFTCAP:
                g = g * dz
            tl.store(g_row + c, (g * keep).to(grad_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # the ids' gradients replace the tail's there
        for j0 in range(0, K, KBLOCK):
            mask = j0 + jj < K
            ids = tl.load(ids_row + j0 + jj, mask=mask, other=0)
            g = tl.load(scratch_row + j0 + jj, mask=mask, other=0.0)
            tl.store(g_row + ids, g.to(grad_ptr.dtype.element_ty), mask=mask & (ids >= 0) & (ids < Vs))


def topk_distillation_rows(student, ids, logprobs, target, soft, hard, grad, temperature, beta, hard_weight,
                           ignore_index, scale_by_temperature, softcap, grad_scale) -> None:
    """Same contract as csrc/distillation/distillation.h (top-k): soft, hard (and grad) in place."""
    n, v_s = student.shape
    if n == 0:
        return
    k = ids.shape[1]
    block, warps = launch_config(v_s, _INTERPRET_MAX_BLOCK if _is_interpreted() else MAX_BLOCK)
    has_softcap = softcap is not None and float(softcap) > 0.0
    factor = temperature * temperature if scale_by_temperature else 1.0
    scratch = torch.empty(n, k, dtype=torch.float32, device=student.device) if grad is not None else soft
    _topk_rows_kernel[(n,)](
        student, ids, logprobs, target if target is not None else ids, soft, hard,
        grad if grad is not None else soft, scratch,
        v_s, k, student.stride(0), int(ignore_index), 1.0 / temperature, factor, float(beta),
        math.log(beta) if beta > 0.0 else 0.0, math.log1p(-beta) if beta < 1.0 else 0.0,
        float(softcap) if has_softcap else 1.0, grad_scale * (1.0 - hard_weight) * factor / temperature,
        grad_scale * hard_weight, TAIL_EXACT,
        HAS_TARGET=target is not None, HAS_GRAD=grad is not None, HAS_SOFTCAP=has_softcap, HAS_TAIL=k < v_s,
        MODE=kl_mode(beta), BLOCK=block, KBLOCK=ID_BLOCK, num_warps=warps,
    )
