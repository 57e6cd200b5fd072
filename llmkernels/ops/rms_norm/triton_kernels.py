"""Triton kernels for rms_norm (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

Forward: one program per row. With the ONE_BLOCK layout (see ONE_BLOCK_ROWS), a row that fits one
block is read once and normalised from registers; otherwise it takes two sweeps in column blocks (the sum
of squares, then the scaled output; the second re-reads the row from cache, or the h this program
just stored).
Backward: one program per block of rows (the fixed partition of ``block_rows``), which writes dx
for each of its rows and accumulates grad_y * xhat into its block's float32 partial row (in
registers under ONE_BLOCK, stored once; else read-modified-written in memory row by row); a second
kernel sums the partial rows in block order per column, so the weight gradient is deterministic.
Both layouts do the same arithmetic in the same order: the same bits.
Every operand is loaded and stored in its own pointer's dtype (x bf16 beside a float32 residual,
y narrower than h), and the backward can store dx twice, in x's and in residual's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Columns a program holds at once (the row is swept in blocks of this many past it).
MAX_BLOCK = 4096
MIN_BLOCK = 16
# Columns per program of the partial-sum kernel.
SUM_BLOCK = 256

def block_columns(dim: int) -> int:
    """BLOCK of a launch over rows of ``dim`` columns (also what triton_cases.py compiles)."""
    return max(MIN_BLOCK, min(triton.next_power_of_2(dim), MAX_BLOCK))

def warps(block: int) -> int:
    return 4 if block <= 1024 else 8

# The ONE_BLOCK layout (a row held in registers whole; the backward's weight-gradient partial row
# in registers too) is off until a GPU has timed it: it moves fewer bytes per row, but the hot
# backward (residual, weight, weight gradient) needs 182 registers a thread on sm_90 against 128,
# so one program a multiprocessor instead of two (tools/triton_check.py). The first lease found
# the bf16 f+b at 0.56x eager (BENCHMARKS.md, eighth session); benchmarks/device_profile.py
# times both layouts.
ONE_BLOCK_ROWS = False

def fits_one_block(dim: int, block: int) -> bool:
    """ONE_BLOCK: the row is held in registers whole (when the layout is on)."""
    return ONE_BLOCK_ROWS and dim <= block

def block_rows(rows: int) -> int:
    """Rows per block of the weight-gradient reduction: a function of ``rows`` only (the rule of
    csrc/rms_norm/rms_norm_arguments.h), at least 16 rows and at most 256 blocks."""
    return max(16, triton.cdiv(rows, 256))

@triton.jit
def _load_h(x_row, r_row, h_row, c, mask, HAS_RESIDUAL: tl.constexpr):
    """h = x (+ residual) for columns c of one row, in float32; with a residual h is stored in h's
    dtype first and the stored value returned (y normalises the h the op returns)."""
    h = tl.load(x_row + c, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        h = h + tl.load(r_row + c, mask=mask, other=0.0).to(tl.float32)
        stored = h.to(h_row.dtype.element_ty)
        tl.store(h_row + c, stored, mask=mask)
        h = stored.to(tl.float32)
    return h

@triton.jit
def _rms_norm_forward_kernel(
    x_ptr, r_ptr, w_ptr, y_ptr, h_ptr, rstd_ptr, dim, eps,
    sx, sr, sy, sh,
    HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, ONE_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * sx
    h_row = h_ptr + row * sh
    cols = tl.arange(0, BLOCK)
    if ONE_BLOCK:
        # The row fits one block: read once, normalise from registers (the same arithmetic, in the
        # same order, as the two sweeps below).
        mask = cols < dim
        h = _load_h(x_row, r_ptr + row * sr, h_row, cols, mask, HAS_RESIDUAL)
        rstd = 1.0 / tl.sqrt(tl.sum(h * h, axis=0) / dim + eps)
        tl.store(rstd_ptr + row, rstd)
        y = h * rstd
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + cols, mask=mask, other=0.0)
        tl.store(y_ptr + row * sy + cols, y.to(y_ptr.dtype.element_ty), mask=mask)
        return
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for c0 in range(0, dim, BLOCK):
        c = c0 + cols
        mask = c < dim
        h = _load_h(x_row, r_ptr + row * sr, h_row, c, mask, HAS_RESIDUAL)
        acc += h * h
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / dim + eps)
    tl.store(rstd_ptr + row, rstd)
    for c0 in range(0, dim, BLOCK):
        c = c0 + cols
        mask = c < dim
        if HAS_RESIDUAL:
            h = tl.load(h_row + c, mask=mask, other=0.0).to(tl.float32)
        else:
            h = tl.load(x_row + c, mask=mask, other=0.0).to(tl.float32)
        y = h * rstd
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + c, mask=mask, other=0.0)
        tl.store(y_ptr + row * sy + c, y.to(y_ptr.dtype.element_ty), mask=mask)

@triton.jit
def _grad_terms(gy_ptr, inp_ptr, w, row, sgy, sinp, c, mask, rstd, HAS_WEIGHT: tl.constexpr):
    """One row's columns c: dy, g = dy * weight and xhat = x * rstd, in float32."""
    dy = tl.load(gy_ptr + row * sgy + c, mask=mask, other=0.0).to(tl.float32)
    g = dy
    if HAS_WEIGHT:
        g = g * w
    xhat = tl.load(inp_ptr + row * sinp + c, mask=mask, other=0.0).to(tl.float32) * rstd
    return dy, g, xhat

@triton.jit
def _store_dx(g, xhat, mean, rstd, gh_ptr, dx_ptr, dres_ptr, row, sgh, sdx, sdres, c, mask,
              HAS_GRAD_H: tl.constexpr, HAS_DRESIDUAL: tl.constexpr):
    """dx = (g - xhat * mean(g * xhat)) * rstd (+ grad_h) for one row's columns c, stored in dx's
    dtype and, when asked, in dresidual's."""
    dx = (g - xhat * mean) * rstd
    if HAS_GRAD_H:
        dx += tl.load(gh_ptr + row * sgh + c, mask=mask, other=0.0).to(tl.float32)
    tl.store(dx_ptr + row * sdx + c, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    if HAS_DRESIDUAL:
        tl.store(dres_ptr + row * sdres + c, dx.to(dres_ptr.dtype.element_ty), mask=mask)

@triton.jit
def _rms_norm_backward_kernel(
    gy_ptr, gh_ptr, inp_ptr, w_ptr, rstd_ptr, dx_ptr, dres_ptr, partial_ptr, rows, dim, rows_per_block,
    sgy, sgh, sinp, sdx, sdres,
    HAS_GRAD_H: tl.constexpr, HAS_WEIGHT: tl.constexpr, WEIGHT_GRAD: tl.constexpr,
    HAS_DRESIDUAL: tl.constexpr, ONE_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
):
    block = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    part_row = partial_ptr + block * dim
    first = block * rows_per_block
    if ONE_BLOCK:
        # The row fits one block: each row is read once, and the block's weight-gradient partial
        # row stays in registers until its one store (the sweeps below re-read the row and
        # read-modify-write the float32 partial row in memory for every row). Same arithmetic, in
        # the same order, so the same bits.
        mask = cols < dim
        w = 1.0
        if HAS_WEIGHT:
            w = tl.load(w_ptr + cols, mask=mask, other=0.0)
        part = tl.zeros([BLOCK], dtype=tl.float32)
        for r in range(0, tl.minimum(rows_per_block, rows - first)):
            row = first + r
            rstd = tl.load(rstd_ptr + row)
            dy, g, xhat = _grad_terms(gy_ptr, inp_ptr, w, row, sgy, sinp, cols, mask, rstd, HAS_WEIGHT)
            mean = tl.sum(g * xhat, axis=0) / dim
            _store_dx(g, xhat, mean, rstd, gh_ptr, dx_ptr, dres_ptr, row, sgh, sdx, sdres, cols, mask,
                      HAS_GRAD_H, HAS_DRESIDUAL)
            if WEIGHT_GRAD:
                part = part + dy * xhat
        if WEIGHT_GRAD:
            tl.store(part_row + cols, part, mask=mask)
        return
    for r in range(0, rows_per_block):
        row = first + r
        if row < rows:
            rstd = tl.load(rstd_ptr + row)
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            for c0 in range(0, dim, BLOCK):
                c = c0 + cols
                mask = c < dim
                w = 1.0
                if HAS_WEIGHT:
                    w = tl.load(w_ptr + c, mask=mask, other=0.0)
                _dy, g, xhat = _grad_terms(gy_ptr, inp_ptr, w, row, sgy, sinp, c, mask, rstd, HAS_WEIGHT)
                acc += g * xhat
            mean = tl.sum(acc, axis=0) / dim
            for c0 in range(0, dim, BLOCK):
                c = c0 + cols
                mask = c < dim
                w = 1.0
                if HAS_WEIGHT:
                    w = tl.load(w_ptr + c, mask=mask, other=0.0)
                dy, g, xhat = _grad_terms(gy_ptr, inp_ptr, w, row, sgy, sinp, c, mask, rstd, HAS_WEIGHT)
                _store_dx(g, xhat, mean, rstd, gh_ptr, dx_ptr, dres_ptr, row, sgh, sdx, sdres, c, mask,
                          HAS_GRAD_H, HAS_DRESIDUAL)
                if WEIGHT_GRAD:
                    # Each column of the partial row belongs to one lane of this program: a plain
                    # read-modify-write, in row order.
                    part = tl.load(part_row + c, mask=mask, other=0.0)
                    tl.store(part_row + c, part + dy * xhat, mask=mask)

@triton.jit
def _rms_norm_sum_partials_kernel(partial_ptr, dweight_ptr, blocks, dim, BLOCK: tl.constexpr):
    c = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = c < dim
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for b in range(0, blocks):
        acc += tl.load(partial_ptr + b * dim + c, mask=mask, other=0.0)
    tl.store(dweight_ptr + c, acc, mask=mask)

def rms_norm_forward(x, residual, weight, y, h, rstd, eps):
    """Same contract as csrc/rms_norm/rms_norm.h: y, h (with residual) and rstd written in place."""
    rows, dim = x.shape
    block = block_columns(dim)
    has_residual = residual is not None
    r = residual if has_residual else x
    h_out = h if has_residual else y
    w = weight if weight is not None else rstd
    _rms_norm_forward_kernel[(rows,)](
        x, r, w, y, h_out, rstd, dim, eps,
        x.stride(0), r.stride(0), y.stride(0), h_out.stride(0),
        HAS_RESIDUAL=has_residual, HAS_WEIGHT=weight is not None, ONE_BLOCK=fits_one_block(dim, block), BLOCK=block,
        num_warps=warps(block),
    )

def rms_norm_backward(grad_y, grad_h, inp, weight, rstd, dx, dresidual, dweight):
    """Same contract as csrc/rms_norm/rms_norm.h: dx and, when given, dresidual and dweight
    written in place."""
    rows, dim = inp.shape
    block = block_columns(dim)
    per_block = block_rows(rows)
    blocks = triton.cdiv(rows, per_block)
    weight_grad = dweight is not None
    one_block = fits_one_block(dim, block)
    # One block a row: every block stores its whole partial row once (no zero fill needed).
    alloc = torch.empty if one_block else torch.zeros
    partial = alloc((blocks, dim) if weight_grad else (1,), dtype=torch.float32, device=inp.device)
    gh = grad_h if grad_h is not None else grad_y
    dres = dresidual if dresidual is not None else dx
    _rms_norm_backward_kernel[(blocks,)](
        grad_y, gh, inp, weight if weight is not None else rstd, rstd, dx, dres, partial, rows, dim, per_block,
        grad_y.stride(0), gh.stride(0), inp.stride(0), dx.stride(0), dres.stride(0),
        HAS_GRAD_H=grad_h is not None, HAS_WEIGHT=weight is not None, WEIGHT_GRAD=weight_grad,
        HAS_DRESIDUAL=dresidual is not None, ONE_BLOCK=one_block, BLOCK=block, num_warps=warps(block),
    )
    if weight_grad:
        _rms_norm_sum_partials_kernel[(triton.cdiv(dim, SUM_BLOCK),)](partial, dweight, blocks, dim, BLOCK=SUM_BLOCK)
