"""Triton kernel for the distillation rows (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

One program handles one row pair, whatever the vocabulary size: the first loop walks both rows in
BLOCK chunks keeping online (max, sum of exp) pairs for s/T and t/T over the shared V columns and
for s over the student's full row (the hard part); the second takes the divergence; the third,
only when a gradient is wanted, re-reads the student (and teacher) and writes the gradient. Same
contract as csrc/distillation/distillation.h. Log-probabilities are formed as (y - max) - log(sum),
never y - lse: lse rounded to float32 at |y| ~ 1e8 (logits of 1e4 at T = 1e-4) is off by units.
The soft-cap and block loader are the cross-entropy kernel's.
"""

from __future__ import annotations

import math
import os

import triton
import triton.language as tl

from llmkernels.ops.cross_entropy.triton_kernels import (
    _INTERPRET_MAX_BLOCK, MAX_BLOCK, _logit_block, _softcap, launch_config,
)

_FORWARD_KL, _REVERSE_KL, _JSD = 0, 1, 2
MODES = (_FORWARD_KL, _REVERSE_KL, _JSD)


def kl_mode(beta: float) -> int:
    """MODE of a launch: forward KL at beta 0, reverse KL at 1, the generalised JSD between."""
    return _FORWARD_KL if beta == 0.0 else _REVERSE_KL if beta == 1.0 else _JSD


@triton.jit
def _online(m, s, y, mask):
    y = tl.where(mask, y, float("-inf"))
    m_new = tl.maximum(m, tl.max(y, axis=0))  # every row's first block holds a real column
    s = s * tl.exp(m - m_new) + tl.sum(tl.exp(y - m_new), axis=0)
    return m_new, s


@triton.jit
def _weighted(p, d):
    """p * d with 0 * anything = 0: a probability of 0 (a logit of -inf) adds nothing to p log(p / q)."""
    return tl.where(p > 0.0, p * d, 0.0)


@triton.jit
def _log_mix(x, y):
    """log(e^x + e^y) without overflow."""
    hi = tl.maximum(x, y)
    lo = tl.minimum(x, y)
    return hi + tl.log(1.0 + tl.exp(lo - hi))


@triton.jit
def _row_target(target_ptr, row, ignore_index, HAS_TARGET: tl.constexpr):
    """(t_safe, keep) of a row: its target for the hard part (0 for an ignored row, whose target
    may be out of range; -1 without targets) and 0.0 for an ignored row, else 1.0."""
    if HAS_TARGET:
        t = tl.load(target_ptr + row)
        valid = t != ignore_index
        t_safe = tl.where(valid, t, 0)
        keep = tl.where(valid, 1.0, 0.0)
    else:
        t_safe = -1
        keep = 1.0
    return t_safe, keep


@triton.jit
def _store_hard(hard_ptr, row, s_row, t_safe, keep, mh, log_sh, softcap, HAS_TARGET: tl.constexpr,
                HAS_SOFTCAP: tl.constexpr):
    """The hard part: cross-entropy at T = 1 from the student row's (max, log sum exp); 0 without targets."""
    if HAS_TARGET:
        z_t = tl.load(s_row + t_safe).to(tl.float32)
        if HAS_SOFTCAP:
            z_t, _unused = _softcap(z_t, softcap, False)
        tl.store(hard_ptr + row, keep * (log_sh - (z_t - mh)))
    else:
        tl.store(hard_ptr + row, 0.0)


@triton.jit
def _log_probs(s_row, t_row, start, cols, V, inv_t, ms, log_ss, mt, log_st, softcap, HAS_SOFTCAP: tl.constexpr):
    """Columns start + cols < V: mask, student and teacher log-probs a, b (0 past V), p = e^a, r = e^b."""
    c, mask, zs, _unused = _logit_block(s_row, start, cols, V, softcap, HAS_SOFTCAP, False)
    c, mask, zt, _unused = _logit_block(t_row, start, cols, V, softcap, HAS_SOFTCAP, False)
    a = tl.where(mask, (zs * inv_t - ms) - log_ss, 0.0)
    b = tl.where(mask, (zt * inv_t - mt) - log_st, 0.0)
    p = tl.where(mask, tl.exp(a), 0.0)
    r = tl.where(mask, tl.exp(b), 0.0)
    return mask, a, b, p, r


@triton.jit
def _distillation_row_kernel(
    s_ptr, t_ptr, target_ptr, soft_ptr, hard_ptr, grad_ptr,
    Vs, V, s_stride, t_stride, ignore_index, inv_t, soft_factor, beta, log_beta, log_rest, softcap, c_soft, c_hard,
    HAS_TARGET: tl.constexpr, HAS_GRAD: tl.constexpr, HAS_SOFTCAP: tl.constexpr, MODE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    s_row = s_ptr + row * s_stride
    t_row = t_ptr + row * t_stride
    cols = tl.arange(0, BLOCK)
    t_safe, keep = _row_target(target_ptr, row, ignore_index, HAS_TARGET)

    ms = tl.full([], float("-inf"), tl.float32)
    mt = tl.full([], float("-inf"), tl.float32)
    mh = tl.full([], float("-inf"), tl.float32)
    ss = tl.zeros([], tl.float32)
    st = tl.zeros([], tl.float32)
    sh = tl.zeros([], tl.float32)
    for start in range(0, Vs, BLOCK):
        c, mask_s, zs, _unused = _logit_block(s_row, start, cols, Vs, softcap, HAS_SOFTCAP, False)
        c, mask_v, zt, _unused = _logit_block(t_row, start, cols, V, softcap, HAS_SOFTCAP, False)
        ms, ss = _online(ms, ss, zs * inv_t, mask_v)
        mt, st = _online(mt, st, zt * inv_t, mask_v)
        if HAS_TARGET:
            mh, sh = _online(mh, sh, zs, mask_s)
    log_ss = tl.log(ss)
    log_st = tl.log(st)

    loss = tl.zeros([], tl.float32)
    student_kl = tl.zeros([], tl.float32)
    for start in range(0, V, BLOCK):
        mask, a, b, p, r = _log_probs(s_row, t_row, start, cols, V, inv_t, ms, log_ss, mt, log_st, softcap, HAS_SOFTCAP)
        if MODE == 0:
            loss += tl.sum(_weighted(r, b - a), axis=0)
        elif MODE == 1:
            loss += tl.sum(_weighted(p, a - b), axis=0)
        else:
            lm = _log_mix(b + log_beta, a + log_rest)
            term_s = _weighted(p, a - lm)
            loss += tl.sum(beta * _weighted(r, b - lm) + (1.0 - beta) * term_s, axis=0)
            student_kl += tl.sum(term_s, axis=0)
    if MODE == 1:
        student_kl = loss
    tl.store(soft_ptr + row, keep * soft_factor * loss)

    log_sh = tl.log(sh)
    _store_hard(hard_ptr, row, s_row, t_safe, keep, mh, log_sh, softcap, HAS_TARGET, HAS_SOFTCAP)

    if HAS_GRAD:
        g_row = grad_ptr + row * Vs
        for start in range(0, Vs, BLOCK):
            c, mask_s, zs, dz = _logit_block(s_row, start, cols, Vs, softcap, HAS_SOFTCAP, True)
            mask, a, b, p, r = _log_probs(s_row, t_row, start, cols, V, inv_t, ms, log_ss, mt, log_st, softcap,
                                          HAS_SOFTCAP)
            if MODE == 0:
                g = (p - r) * c_soft
            elif MODE == 1:
                g = _weighted(p, (a - b) - student_kl) * c_soft
            else:
                g = _weighted(p, (a - _log_mix(b + log_beta, a + log_rest)) - student_kl) * (c_soft * (1.0 - beta))
            g = tl.where(mask, g, 0.0)
            if HAS_TARGET:
                p_h = tl.exp(tl.where(mask_s, (zs - mh) - log_sh, float("-inf")))
                g += c_hard * (p_h - tl.where(c == t_safe, 1.0, 0.0))
            if HAS_SOFTCAP:
                g = g * dz
            tl.store(g_row + c, (g * keep).to(grad_ptr.dtype.element_ty), mask=mask_s)


def distillation_rows(student, teacher, target, soft, hard, grad, temperature, beta, hard_weight, ignore_index,
                      scale_by_temperature, softcap, grad_scale) -> None:
    """Same contract as csrc/distillation/distillation.h: soft, hard (and grad) written in place."""
    n, v_s = student.shape
    if n == 0:
        return
    width = min(v_s, teacher.shape[1])
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    block, num_warps = launch_config(v_s, _INTERPRET_MAX_BLOCK if interpret else MAX_BLOCK)  # the CE rule
    mode = kl_mode(beta)
    has_softcap = softcap is not None and float(softcap) > 0.0
    factor = temperature * temperature if scale_by_temperature else 1.0
    _distillation_row_kernel[(n,)](
        student, teacher, target if target is not None else soft, soft, hard, grad if grad is not None else soft,
        v_s, width, student.stride(0), teacher.stride(0), int(ignore_index), 1.0 / temperature, factor, float(beta),
        math.log(beta) if beta > 0.0 else 0.0, math.log1p(-beta) if beta < 1.0 else 0.0,
        float(softcap) if has_softcap else 1.0, grad_scale * (1.0 - hard_weight) * factor / temperature,
        grad_scale * hard_weight,
        HAS_TARGET=target is not None, HAS_GRAD=grad is not None, HAS_SOFTCAP=has_softcap, MODE=mode, BLOCK=block,
        num_warps=num_warps,
    )
