"""Position-encoding modules."""

from __future__ import annotations

import torch

from llmkernels.ops.rotary.api import apply_rotary
from llmkernels.ops.rotary.cache import rope_cache
from llmkernels.ops.sinusoidal.api import add_sinusoidal_position_encoding


class RotaryEmbedding(torch.nn.Module):
    """Holds a (cos, sin) cache and rotates q and k: ``forward(q, k, position_ids=None) -> (q, k)``.

    The cache is a float32 non-persistent buffer (recomputed, never saved in checkpoints); it
    follows ``.to(device)`` and stays float32 under ``.to(dtype)`` so bf16 models rotate with
    float32 angles.
    """

    def __init__(self, rotary_dim, max_positions=2048, base=10000.0, scaling=None, interleaved=False):
        super().__init__()
        cos, sin = rope_cache(max_positions, rotary_dim, base=base, scaling=scaling)
        self.rotary_dim, self.max_positions, self.base = rotary_dim, max_positions, base
        self.scaling, self.interleaved = scaling, interleaved
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _apply(self, fn, recurse=True):
        # Keep the tables float32 whatever dtype the module is cast to.
        super()._apply(fn, recurse)
        self.cos, self.sin = self.cos.float(), self.sin.float()
        return self

    def forward(self, q, k, position_ids=None):
        return apply_rotary(q, k, self.cos, self.sin, position_ids, interleaved=self.interleaved)

    def extra_repr(self):
        return (
            f"rotary_dim={self.rotary_dim}, max_positions={self.max_positions}, base={self.base}, "
            f"scaling={self.scaling}, interleaved={self.interleaved}"
        )


class SinusoidalPositionEncoding(torch.nn.Module):
    """``forward(x, position_ids=None) = x * scale + PE[positions]`` for x (batch, seq, d_model)."""

    def __init__(self, d_model, base=10000.0, scale=1.0):
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int; got {d_model!r}")
        self.d_model, self.base, self.scale = d_model, base, scale

    def forward(self, x, position_ids=None):
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (batch, seq, {self.d_model}); got shape {tuple(x.shape)}")
        return add_sinusoidal_position_encoding(x, position_ids, base=self.base, scale=self.scale)

    def extra_repr(self):
        return f"d_model={self.d_model}, base={self.base}, scale={self.scale}"
