"""RMSNorm (with an optional fused residual add) in plain PyTorch: the specification every backend
is tested against.

    h = x (+ residual),  rstd = 1 / sqrt(mean(h^2, -1) + eps),  y = h * rstd (* weight)

h is stored in x's dtype and y is computed from that stored h, so y is exactly the RMSNorm of the
h the op returns (and saves for the backward), as with the unfused ``h = x + r; rms_norm(h)``.
Math runs in float32 (float64 for float64 inputs). The backward, with xhat = h * rstd and
g = dy (* weight):

    dh = rstd * (g - xhat * mean(g * xhat, -1)) (+ dh_out, the gradient reaching h itself)
    dx = dresidual = dh,  dweight = sum over rows of dy * xhat
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def forward(x, residual, weight, eps: float):
    """(y, h or None, rstd): h only when residual is given; rstd has x's leading shape."""
    compute = compute_dtype(x.dtype)
    h = None if residual is None else (x.to(compute) + residual.to(compute)).to(x.dtype)
    hf = (x if h is None else h).to(compute)
    rstd = torch.rsqrt(hf.square().mean(-1, keepdim=True) + eps)
    y = hf * rstd
    if weight is not None:
        y = y * weight.to(compute)
    return y.to(x.dtype), h, rstd.squeeze(-1)


def backward(grad_y, grad_h, inp, weight, rstd, weight_grad: bool):
    """(dh, dweight or None): dh in inp's dtype, dweight in the compute dtype."""
    compute = compute_dtype(inp.dtype)
    r = rstd.to(compute).unsqueeze(-1)
    xhat = inp.to(compute) * r
    dy = grad_y.to(compute)
    g = dy if weight is None else dy * weight.to(compute)
    dh = r * (g - xhat * (g * xhat).mean(-1, keepdim=True))
    if grad_h is not None:
        dh = dh + grad_h.to(compute)
    dweight = (dy * xhat).reshape(-1, inp.shape[-1]).sum(0) if weight_grad else None
    return dh.to(inp.dtype), dweight
