"""Triton kernels for the gated units SwiGLU and GeGLU (CUDA GPUs; on a CPU only under
TRITON_INTERPRET=1); the activation is the ACTIVATION constexpr (the ops' ACTIVATION_CODES).

One program handles one block of columns of one row: gate and up are (rows, H) with any row
stride and dense columns (the two halves of a packed gate_up row are two such operands), so the
packed and the two-tensor forms share the kernels. sigmoid(gate) is recomputed in the backward.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _activation_and_derivative(g, ACTIVATION: tl.constexpr):
    """(act(g), act'(g)) for ACTIVATION 0 silu, 1 gelu (erf), 2 gelu (tanh approximation)."""
    if ACTIVATION == 0:
        # exp(-g) overflows to inf below g ~ -88 and sigmoid is then exactly 0: no NaN, as
        # 1 + g * (1 - s) stays finite and is multiplied by s = 0.
        s = 1.0 / (1.0 + tl.exp(-g))
        return g * s, s * (1.0 + g * (1.0 - s))
    elif ACTIVATION == 1:
        cdf = 0.5 * (1.0 + tl.math.erf(g * 0.7071067811865476))
        return g * cdf, cdf + g * (tl.exp(-0.5 * g * g) * 0.3989422804014327)
    else:
        # Past |g| = 10, t is +-1 exactly: the clamp keeps g^3 finite (inf * 0 would be NaN).
        gc = tl.minimum(tl.maximum(g, -10.0), 10.0)
        inner = 0.7978845608028654 * (gc + 0.044715 * gc * gc * gc)
        t = 2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0  # tanh(inner)
        dact = 0.5 * (1.0 + t) + 0.5 * gc * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * gc * gc)
        return 0.5 * g * (1.0 + t), dact


@triton.jit
def _swiglu_forward_kernel(
    gate_ptr, up_ptr, out_ptr, cols, s_gate, s_up, s_out, ACTIVATION: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = c < cols
    g = tl.load(gate_ptr + row * s_gate + c, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + row * s_up + c, mask=mask, other=0.0).to(tl.float32)
    act, _ = _activation_and_derivative(g, ACTIVATION)
    tl.store(out_ptr + row * s_out + c, (act * u).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_backward_kernel(
    grad_ptr, gate_ptr, up_ptr, grad_gate_ptr, grad_up_ptr, cols,
    s_grad, s_gate, s_up, s_grad_gate, s_grad_up, ACTIVATION: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = c < cols
    dy = tl.load(grad_ptr + row * s_grad + c, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(gate_ptr + row * s_gate + c, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + row * s_up + c, mask=mask, other=0.0).to(tl.float32)
    act, dact = _activation_and_derivative(g, ACTIVATION)
    tl.store(grad_up_ptr + row * s_grad_up + c, (dy * act).to(grad_up_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_gate_ptr + row * s_grad_gate + c, (dy * u * dact).to(grad_gate_ptr.dtype.element_ty), mask=mask)


MAX_BLOCK = 1024


def block_size(cols: int) -> int:
    """Columns per program (also what triton_cases.py compiles)."""
    return min(MAX_BLOCK, triton.next_power_of_2(cols))


def _grid(rows: int, cols: int, block: int) -> tuple[int, int]:
    return rows, triton.cdiv(cols, block)


def swiglu_forward(gate, up, out, activation):
    """Same contract as csrc/swiglu/swiglu.h: (rows, H) operands, out written."""
    rows, cols = gate.shape
    block = block_size(cols)
    _swiglu_forward_kernel[_grid(rows, cols, block)](
        gate, up, out, cols, gate.stride(0), up.stride(0), out.stride(0), ACTIVATION=activation, BLOCK=block,
    )


def swiglu_backward(grad, gate, up, grad_gate, grad_up, activation):
    """Same contract as csrc/swiglu/swiglu.h: grad_gate and grad_up written."""
    rows, cols = gate.shape
    block = block_size(cols)
    _swiglu_backward_kernel[_grid(rows, cols, block)](
        grad, gate, up, grad_gate, grad_up, cols,
        grad.stride(0), gate.stride(0), up.stride(0), grad_gate.stride(0), grad_up.stride(0),
        ACTIVATION=activation, BLOCK=block,
    )
