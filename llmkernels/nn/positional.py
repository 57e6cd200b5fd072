"""Position-encoding modules: rotary (RoPE) and sinusoidal."""

from __future__ import annotations

import torch

import llmkernels
from llmkernels.nn import torch_baseline


class RotaryEmbedding(torch.nn.Module):
    """Holds a (cos, sin) cache and rotates q and k: ``forward(q, k, position_ids=None) -> (q, k)``.

    The cache is a float32 non-persistent buffer (recomputed, never saved in checkpoints); it
    follows ``.to(device)`` and stays float32 under ``.to(dtype)`` so bf16 models rotate with
    float32 angles. ``ops="torch"`` rotates with Hugging Face's ``rotate_half`` (in q's dtype)
    instead of ``llmkernels.apply_rotary``: the baseline.
    """

    def __init__(self, rotary_dim, max_positions=2048, base=10000.0, scaling=None, interleaved=False, *, ops="llmkernels"):
        super().__init__()
        cos, sin = llmkernels.rope_cache(max_positions, rotary_dim, base=base, scaling=scaling)
        self.rotary_dim, self.max_positions, self.base = rotary_dim, max_positions, base
        self.scaling, self.interleaved = scaling, interleaved
        self.ops = torch_baseline.check_ops(ops)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _apply(self, fn, recurse=True):
        # Keep the tables float32 whatever dtype the module is cast to.
        super()._apply(fn, recurse)
        self.cos, self.sin = self.cos.float(), self.sin.float()
        return self

    def forward(self, q, k, position_ids=None):
        if self.ops == "torch":
            return torch_baseline.rotary(q, k, self.cos, self.sin, position_ids, self.interleaved)
        return llmkernels.apply_rotary(q, k, self.cos, self.sin, position_ids, interleaved=self.interleaved)

    def extra_repr(self):
        return (
            f"rotary_dim={self.rotary_dim}, max_positions={self.max_positions}, base={self.base}, "
            f"scaling={self.scaling}, interleaved={self.interleaved}, ops={self.ops!r}"
        )


class SinusoidalPositionEncoding(torch.nn.Module):
    """``forward(x, position_ids=None) = x * scale + PE[positions]`` for x (batch, seq, d_model).

    ``ops="torch"`` adds rows of ``llmkernels.sinusoidal_table`` by plain indexing (the baseline);
    given ``position_ids``, it needs ``max_positions``, the size of that table.
    """

    def __init__(self, d_model, base=10000.0, scale=1.0, *, max_positions=None, ops="llmkernels"):
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int; got {d_model!r}")
        self.d_model, self.base, self.scale, self.max_positions = d_model, base, scale, max_positions
        self.ops = torch_baseline.check_ops(ops)

    def forward(self, x, position_ids=None):
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (batch, seq, {self.d_model}); got shape {tuple(x.shape)}")
        if self.ops == "llmkernels":
            return llmkernels.add_sinusoidal_position_encoding(x, position_ids, base=self.base, scale=self.scale)
        if position_ids is not None and self.max_positions is None:
            raise ValueError("ops='torch' with position_ids needs max_positions, the size of the table to index")
        rows = x.shape[1] if position_ids is None else self.max_positions
        table = llmkernels.sinusoidal_table(rows, self.d_model, base=self.base, device=x.device)
        encoding = table if position_ids is None else table[position_ids]
        return (x if self.scale == 1 else x * self.scale) + encoding.to(x.dtype)

    def extra_repr(self):
        return f"d_model={self.d_model}, base={self.base}, scale={self.scale}, ops={self.ops!r}"
