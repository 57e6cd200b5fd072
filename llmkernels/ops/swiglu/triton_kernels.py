"""Triton kernels for SwiGLU (CUDA GPUs; on a CPU only under TRITON_INTERPRET=1).

One program handles one block of columns of one row: gate and up are (rows, H) with any row
stride and dense columns (the two halves of a packed gate_up row are two such operands), so the
packed and the two-tensor forms share the kernels. sigmoid(gate) is recomputed in the backward.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _silu_and_derivative(g):
    # exp(-g) overflows to inf for g below ~-88 and sigmoid is then exactly 0: no NaN, as
    # 1 + g * (1 - s) stays finite and is multiplied by s = 0.
    s = 1.0 / (1.0 + tl.exp(-g))
    return g * s, s * (1.0 + g * (1.0 - s))


@triton.jit
def _swiglu_forward_kernel(gate_ptr, up_ptr, out_ptr, cols, s_gate, s_up, s_out, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = c < cols
    g = tl.load(gate_ptr + row * s_gate + c, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + row * s_up + c, mask=mask, other=0.0).to(tl.float32)
    act, _ = _silu_and_derivative(g)
    tl.store(out_ptr + row * s_out + c, (act * u).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_backward_kernel(
    grad_ptr, gate_ptr, up_ptr, grad_gate_ptr, grad_up_ptr, cols,
    s_grad, s_gate, s_up, s_grad_gate, s_grad_up, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = c < cols
    dy = tl.load(grad_ptr + row * s_grad + c, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(gate_ptr + row * s_gate + c, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + row * s_up + c, mask=mask, other=0.0).to(tl.float32)
    act, dact = _silu_and_derivative(g)
    tl.store(grad_up_ptr + row * s_grad_up + c, (dy * act).to(grad_up_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_gate_ptr + row * s_grad_gate + c, (dy * u * dact).to(grad_gate_ptr.dtype.element_ty), mask=mask)


MAX_BLOCK = 1024


def block_size(cols: int) -> int:
    """Columns per program (also what triton_cases.py compiles)."""
    return min(MAX_BLOCK, triton.next_power_of_2(cols))


def _grid(rows: int, cols: int, block: int) -> tuple[int, int]:
    return rows, triton.cdiv(cols, block)


def swiglu_forward(gate, up, out):
    """Same contract as csrc/swiglu/swiglu.h: (rows, H) operands, out written."""
    rows, cols = gate.shape
    block = block_size(cols)
    _swiglu_forward_kernel[_grid(rows, cols, block)](
        gate, up, out, cols, gate.stride(0), up.stride(0), out.stride(0), BLOCK=block,
    )


def swiglu_backward(grad, gate, up, grad_gate, grad_up):
    """Same contract as csrc/swiglu/swiglu.h: grad_gate and grad_up written."""
    rows, cols = gate.shape
    block = block_size(cols)
    _swiglu_backward_kernel[_grid(rows, cols, block)](
        grad, gate, up, grad_gate, grad_up, cols,
        grad.stride(0), gate.stride(0), up.stride(0), grad_gate.stride(0), grad_up.stride(0), BLOCK=block,
    )
