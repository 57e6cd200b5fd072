"""Rotary position embedding in plain PyTorch: the specification every backend is tested against.

For a pair (a, b) of a head's rotary columns at position p and angle index i:
    a' = a cos(p, i) - b sin(p, i),   b' = b cos(p, i) + a sin(p, i)
The pairs are (i, i + R/2) in the NeoX/Llama half-split layout and (2i, 2i + 1) in the GPT-J
interleaved layout, R = rotary_dim = 2 * cos.shape[-1]. Columns from R on pass through.
`conjugate` rotates by -theta, which is the backward of the forward rotation.
"""

from __future__ import annotations

import torch


def gather_angles(table: torch.Tensor, position_ids: torch.Tensor | None, seq: int) -> torch.Tensor:
    """Rows of a (max_positions, R/2) table for each position, shaped (P, 1, seq, R/2)."""
    if position_ids is None:
        return table[:seq].unsqueeze(0).unsqueeze(0)
    return table[position_ids].unsqueeze(1)


def rotate(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: torch.Tensor | None,
    interleaved: bool,
    conjugate: bool,
) -> torch.Tensor:
    """x (batch, heads, seq, head_dim); position_ids None or int (P, seq), P in {1, batch}."""
    compute = torch.promote_types(x.dtype, torch.float32)
    half = cos.shape[-1]
    rotary_dim = 2 * half
    c = gather_angles(cos.to(compute), position_ids, x.shape[2])
    s = gather_angles(sin.to(compute), position_ids, x.shape[2])
    if conjugate:
        s = -s
    rotated = x[..., :rotary_dim].to(compute)
    if interleaved:
        a, b = rotated[..., 0::2], rotated[..., 1::2]
    else:
        a, b = rotated[..., :half], rotated[..., half:]
    a_out = a * c - b * s
    b_out = b * c + a * s
    if interleaved:
        out = torch.stack((a_out, b_out), dim=-1).flatten(-2)
    else:
        out = torch.cat((a_out, b_out), dim=-1)
    return torch.cat((out.to(x.dtype), x[..., rotary_dim:]), dim=-1)
