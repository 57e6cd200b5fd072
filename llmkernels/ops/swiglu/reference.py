"""SwiGLU in plain PyTorch: the specification every backend is tested against.

With s = sigmoid(g):
    y      = silu(g) * u = g * s * u
    d_up   = dy * g * s
    d_gate = dy * u * s * (1 + g * (1 - s))      (d silu(g) / dg = s + g s (1 - s))
The math runs in float32 (float64 for float64 inputs) and results return in the inputs' dtype.
torch.sigmoid saturates to exactly 0 or 1 for large |g|, so no term overflows for finite g.
"""

from __future__ import annotations

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for two tensors of one shape."""
    compute = _compute_dtype(gate)
    g, u = gate.to(compute), up.to(compute)
    return (g * torch.sigmoid(g) * u).to(gate.dtype)


def swiglu_backward(grad: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_gate, d_up) from the output gradient, recomputing sigmoid(gate) (nothing else is kept)."""
    compute = _compute_dtype(gate)
    dy, g, u = grad.to(compute), gate.to(compute), up.to(compute)
    s = torch.sigmoid(g)
    d_up = dy * g * s
    d_gate = dy * u * s * (1 + g * (1 - s))
    return d_gate.to(gate.dtype), d_up.to(gate.dtype)
