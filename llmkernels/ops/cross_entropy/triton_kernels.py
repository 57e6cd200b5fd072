"""Triton kernels for softmax cross-entropy (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

One program handles one row of logits, whatever the vocabulary size: a row of 128k classes does
not fit one block, so the first loop walks the row in BLOCK chunks keeping a running max and a
sum of exp rescaled to it (float32), which yields lse without ever overflowing, even for logits
of 1e4. The second loop, only when a gradient is wanted, re-reads the row and writes
d(loss)/d(logits) directly, so the (N, C) probabilities are never stored. Same contract as
csrc/cross_entropy/cross_entropy.h.

Label smoothing needs W * lse - sum_c w_c * z_c = W * (lse - m) + sum_c w_c * (m - z_c), m the row
max: two sums of terms >= 0, so neither cancels for large logits nor turns into inf - inf (NaN) at
float32's limits; sum_c w_c (m - z_c) follows the running max as the first loop's exp sum does. tanh is written through exp (there is no tl.tanh in every Triton version, nor in the
interpreter), with a short series near 0 where the exp form loses relative precision.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _softcap(x, softcap, WANT_DERIVATIVE: tl.constexpr):
    """z = softcap * tanh(x / softcap) and, if asked, dz/dx = 1 - tanh^2 (else 1.0)."""
    y = x / softcap
    ay = tl.abs(y)
    e = tl.exp(-2.0 * ay)  # in (0, 1]: never overflows
    t_exp = (1.0 - e) / (1.0 + e)
    y2 = ay * ay
    t_series = ay * (1.0 + y2 * (-1.0 / 3.0 + y2 * (2.0 / 15.0 + y2 * (-17.0 / 315.0))))
    t = tl.where(ay < 0.0625, t_series, t_exp)
    t = tl.where(y < 0.0, -t, t)
    z = softcap * t
    if WANT_DERIVATIVE:
        d = 4.0 * e / ((1.0 + e) * (1.0 + e))  # 1 - tanh^2 without the cancellation near |t| = 1
    else:
        d = 1.0
    return z, d


@triton.jit
def _logit_block(x_row, start, cols, C, softcap, HAS_SOFTCAP: tl.constexpr, WANT_DERIVATIVE: tl.constexpr):
    """Columns c = start + cols of a row, their in-range mask, the logits z there in float32
    (softcapped when asked; 0 past the row) and dz/dx (1.0 unless softcap and derivative)."""
    c = start + cols
    mask = c < C
    z = tl.load(x_row + c, mask=mask, other=0.0).to(tl.float32)
    dz = 1.0
    if HAS_SOFTCAP:
        z, dz = _softcap(z, softcap, WANT_DERIVATIVE)
    return c, mask, z, dz


@triton.jit
def _class_weights(weight_ptr, c, mask, HAS_WEIGHT: tl.constexpr):
    """w_c for the columns c (1.0 without class weights), 0 past the row."""
    if HAS_WEIGHT:
        w = tl.load(weight_ptr + c, mask=mask, other=0.0)
    else:
        w = tl.where(mask, 1.0, 0.0)
    return w


@triton.jit
def _cross_entropy_row_kernel(
    logits_ptr, target_ptr, weight_ptr, loss_ptr, lse_ptr, grad_ptr,
    C, row_stride, ignore_index, label_smoothing, z_loss, softcap, ce_scale, z_scale,
    HAS_GRAD: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    HAS_SMOOTHING: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = logits_ptr + row * row_stride
    cols = tl.arange(0, BLOCK)

    t = tl.load(target_ptr + row)
    valid = t != ignore_index
    t_safe = tl.where(valid, t, 0)  # an ignored row's target may be out of range: never index with it
    z_t = tl.load(x_row + t_safe).to(tl.float32)
    if HAS_SOFTCAP:
        z_t, _unused = _softcap(z_t, softcap, False)
    if HAS_WEIGHT:
        w_t = tl.load(weight_ptr + t_safe)
    else:
        w_t = 1.0

    # Pass 1: running max m, sum of exp(z - m), and (smoothing only) W and sum_c w_c (m - z_c).
    m = tl.full([], float("-inf"), tl.float32)
    s = tl.zeros([], tl.float32)
    w_sum = tl.zeros([], tl.float32)
    wmz_sum = tl.zeros([], tl.float32)
    for start in range(0, C, BLOCK):
        c, mask, z, _unused = _logit_block(x_row, start, cols, C, softcap, HAS_SOFTCAP, False)
        z = tl.where(mask, z, float("-inf"))
        # every block holds at least one real column, so m_new is finite and exp(m - m_new) is 0 or
        # a true ratio, never exp(-inf + inf)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        if HAS_SMOOTHING:
            w = _class_weights(weight_ptr, c, mask, HAS_WEIGHT)
            # the columns so far, moved to the new max; then this block's (0 where w is 0: masked
            # columns, zero class weights). Operands are chosen so that no 0 * inf is ever formed.
            wmz_sum += w_sum * (m_new - tl.where(w_sum > 0, m, m_new))
            wmz_sum += tl.sum(w * tl.where(w != 0, m_new - z, 0.0), axis=0)
            w_sum += tl.sum(w, axis=0)
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
        m = m_new
    # lse - m is kept apart: lse itself, rounded to float32 at |lse| ~ 1e4, is off by ~1e-3, which
    # would put a 1e-3 relative error on every p_c = exp((z_c - m) - (lse - m)) and on lse - z_t
    log_s = tl.log(s)
    lse = m + log_s
    tl.store(lse_ptr + row, lse)

    lse_minus_zt = (m - z_t) + log_s
    loss = (1.0 - label_smoothing) * w_t * lse_minus_zt + z_loss * lse * lse
    if HAS_SMOOTHING:
        # eps / C * (W * lse - sum_c w_c z_c)
        loss += label_smoothing / C * (w_sum * log_s + wmz_sum)
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))

    if HAS_GRAD:
        # g_c = (a + b W + zc) p_c - a [c == t] - b w_c, all zero for an ignored row
        keep = tl.where(valid, 1.0, 0.0)
        a = keep * ce_scale * (1.0 - label_smoothing) * w_t
        b = keep * ce_scale * label_smoothing / C
        coef_p = a + keep * z_scale * 2.0 * z_loss * lse
        if HAS_SMOOTHING:
            coef_p += b * w_sum
        g_row = grad_ptr + row * C
        for start in range(0, C, BLOCK):
            c, mask, z, dz = _logit_block(x_row, start, cols, C, softcap, HAS_SOFTCAP, True)
            p = tl.exp(tl.where(mask, (z - m) - log_s, float("-inf")))
            g = coef_p * p - tl.where(c == t_safe, a, 0.0)
            if HAS_SMOOTHING:
                # w_c is 1.0 on every stored column without class weights: b * 1.0 is exactly b
                g -= b * _class_weights(weight_ptr, c, mask, HAS_WEIGHT)
            if HAS_SOFTCAP:
                g = g * dz
            tl.store(g_row + c, g.to(grad_ptr.dtype.element_ty), mask=mask)


# Largest column block on a GPU; the interpreter executes a block as numpy arrays, where large
# blocks only cost memory.
MAX_BLOCK = 4096
_INTERPRET_MAX_BLOCK = 1024


def launch_config(num_classes: int, max_block: int = MAX_BLOCK) -> tuple[int, int]:
    """(BLOCK, num_warps) of a launch over rows of num_classes (also what triton_cases.py compiles)."""
    block = min(triton.next_power_of_2(max(num_classes, 1)), max_block)
    return block, min(16, max(1, block // 256))


def cross_entropy(logits, target, class_weight, loss_rows, lse, grad, ignore_index,
                  label_smoothing, z_loss, softcap, ce_scale, z_scale) -> None:
    """Same contract as csrc/cross_entropy/cross_entropy.h: loss_rows, lse (and grad) written in place."""
    n, num_classes = logits.shape
    if n == 0:
        return
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    block, num_warps = launch_config(num_classes, _INTERPRET_MAX_BLOCK if interpret else MAX_BLOCK)
    has_grad = grad is not None
    has_weight = class_weight is not None
    has_softcap = softcap is not None and float(softcap) > 0.0
    label_smoothing = float(label_smoothing)
    _cross_entropy_row_kernel[(n,)](
        logits, target,
        class_weight if has_weight else lse,  # any pointer; never read
        loss_rows, lse,
        grad if has_grad else lse,  # any pointer; never written
        num_classes, logits.stride(0), int(ignore_index), label_smoothing, float(z_loss),
        float(softcap) if has_softcap else 1.0, float(ce_scale), float(z_scale),
        HAS_GRAD=has_grad, HAS_WEIGHT=has_weight, HAS_SOFTCAP=has_softcap,
        HAS_SMOOTHING=label_smoothing != 0.0, BLOCK=block,
        num_warps=num_warps,
    )
