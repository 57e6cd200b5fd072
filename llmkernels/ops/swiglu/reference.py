"""Gated linear units in plain PyTorch: the specification every backend is tested against.

For an activation a with derivative a' (computed from g alone, nothing of the forward kept):
    y      = a(g) * u
    d_up   = dy * a(g)
    d_gate = dy * u * a'(g)
SwiGLU: a = silu, s = sigmoid(g): a = g s, a' = s (1 + g (1 - s)); torch.sigmoid saturates to
exactly 0 or 1 for large |g|, so no term overflows for finite g.
GeGLU: a = gelu. Exact: a = g Phi(g), a' = Phi(g) + g phi(g) (Phi, phi the normal cdf and pdf).
Tanh approximation, t = tanh(k (g + c g^3)), k = sqrt(2/pi), c = 0.044715:
a = g (1 + t) / 2, a' = (1 + t) / 2 + g (1 - t^2) k (1 + 3 c g^2) / 2.
The math runs in float32 (float64 for float64 inputs) and results return in the inputs' dtype.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS = ("silu", "gelu", "gelu_tanh")
_K = math.sqrt(2.0 / math.pi)
_C = 0.044715


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def activation_and_derivative(g: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    if activation == "silu":
        s = torch.sigmoid(g)
        return g * s, s * (1 + g * (1 - s))
    if activation == "gelu":
        cdf = 0.5 * (1 + torch.erf(g * math.sqrt(0.5)))
        pdf = torch.exp(-0.5 * g * g) / math.sqrt(2 * math.pi)
        return g * cdf, cdf + g * pdf
    if activation == "gelu_tanh":
        # Past |g| = 10, t is +-1 exactly and the derivative's second term 0; clamping keeps
        # g^3 from overflowing there (inf * 0 would be NaN from a finite gate).
        gc = g.clamp(-10, 10)
        t = torch.tanh(_K * (gc + _C * gc * gc * gc))
        return 0.5 * g * (1 + t), 0.5 * (1 + t) + 0.5 * gc * (1 - t * t) * _K * (1 + 3 * _C * gc * gc)
    raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")


def gated(gate: torch.Tensor, up: torch.Tensor, activation: str = "silu") -> torch.Tensor:
    """activation(gate) * up for two tensors of one shape."""
    compute = _compute_dtype(gate)
    act, _ = activation_and_derivative(gate.to(compute), activation)
    return (act * up.to(compute)).to(gate.dtype)


def gated_backward(
    grad: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, activation: str = "silu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_gate, d_up) from the output gradient, recomputing the activation from gate."""
    compute = _compute_dtype(gate)
    dy, u = grad.to(compute), up.to(compute)
    act, dact = activation_and_derivative(gate.to(compute), activation)
    return (dy * u * dact).to(gate.dtype), (dy * act).to(gate.dtype)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up."""
    return gated(gate, up, "silu")


def swiglu_backward(grad: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_gate, d_up) of silu(gate) * up."""
    return gated_backward(grad, gate, up, "silu")
