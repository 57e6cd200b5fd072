"""RMSNorm (with an optional fused residual add) in plain PyTorch: the specification every backend
is tested against.

    h = x (+ residual),  rstd = 1 / sqrt(mean(h^2, -1) + eps),  y = h * rstd (* weight)

x and residual may differ in dtype (a bf16 sublayer output onto a float32 residual stream under
autocast): h is stored in their promoted dtype, as ``x + residual`` would be, and y is computed
from that stored h, so y is exactly the RMSNorm of the h the op returns (and saves for the
backward), as with the unfused ``h = x + r; rms_norm(h)``. y has ``out_dtype`` (default h's
dtype): the float32 result rounded once. Math runs in float32 (float64 when h is float64). The
backward, with xhat = h * rstd and g = dy (* weight):

    dh = rstd * (g - xhat * mean(g * xhat, -1)) (+ dh_out, the gradient reaching h itself)
    dx = dresidual = dh (each rounded once to its input's dtype),  dweight = sum over rows of dy * xhat
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def h_dtype(x: torch.Tensor, residual) -> torch.dtype:
    """The dtype h is stored in: x's, promoted with residual's as ``x + residual`` would be."""
    return x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)


def forward(x, residual, weight, eps: float, out_dtype=None):
    """(y, h or None, rstd): h only when residual is given; rstd has x's leading shape."""
    stored = h_dtype(x, residual)
    compute = compute_dtype(stored)
    h = None if residual is None else (x.to(compute) + residual.to(compute)).to(stored)
    hf = (x if h is None else h).to(compute)
    rstd = torch.rsqrt(hf.square().mean(-1, keepdim=True) + eps)
    y = hf * rstd
    if weight is not None:
        y = y * weight.to(compute)
    return y.to(out_dtype or stored), h, rstd.squeeze(-1)


def backward(grad_y, grad_h, inp, weight, rstd, weight_grad: bool, dx_dtype=None, dresidual_dtype=None):
    """(dx, dresidual or None, dweight or None): dx in ``dx_dtype`` (default inp's), dresidual (the
    same gradient) only when ``dresidual_dtype`` is given, dweight in the compute dtype."""
    compute = compute_dtype(inp.dtype)
    r = rstd.to(compute).unsqueeze(-1)
    xhat = inp.to(compute) * r
    dy = grad_y.to(compute)
    g = dy if weight is None else dy * weight.to(compute)
    dh = r * (g - xhat * (g * xhat).mean(-1, keepdim=True))
    if grad_h is not None:
        dh = dh + grad_h.to(compute)
    dweight = (dy * xhat).reshape(-1, inp.shape[-1]).sum(0) if weight_grad else None
    dresidual = None if dresidual_dtype is None else dh.to(dresidual_dtype)
    return dh.to(dx_dtype or inp.dtype), dresidual, dweight
