"""Sinusoidal position encoding in plain PyTorch: the specification.

PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(p / base^(2i/d)), as in "Attention Is All
You Need" (Vaswani et al., 2017): sin fills the even columns and cos the odd ones. (A common
write-up sums sin and cos into one value per column; that is not the paper's encoding.) The angle
is float32(p) * inv_freq[i] in float32, inv_freq[i] = 1 / base^(2i/d), as position tables are
usually built; for odd d the last column is the sin of i = d // 2.
"""

from __future__ import annotations

import torch


def inverse_frequencies(d_model: int, base: float, device=None) -> torch.Tensor:
    exponents = torch.arange(0, d_model, 2, dtype=torch.int64).to(torch.float32) / d_model
    return (1.0 / (base**exponents)).to(device)


def encoding(positions: torch.Tensor, d_model: int, base: float) -> torch.Tensor:
    """PE rows (float32) for integer positions of any shape: (*positions.shape, d_model)."""
    inv_freq = inverse_frequencies(d_model, base, positions.device)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    pe = torch.empty(*positions.shape, d_model, dtype=torch.float32, device=positions.device)
    pe[..., 0::2] = angles.sin()
    pe[..., 1::2] = angles.cos()[..., : d_model // 2]
    return pe


def add_encoding(x: torch.Tensor, position_ids: torch.Tensor | None, base: float, scale: float) -> torch.Tensor:
    """x (batch, seq, d_model) * scale + PE[positions]; position_ids None or int (P, seq)."""
    batch, seq, d_model = x.shape
    if position_ids is None:
        position_ids = torch.arange(seq, device=x.device).unsqueeze(0)
    compute = torch.promote_types(x.dtype, torch.float32)
    pe = encoding(position_ids, d_model, base).to(compute)
    return (x.to(compute) * scale + pe).to(x.dtype)
