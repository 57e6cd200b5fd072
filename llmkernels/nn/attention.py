"""Multi-head attention module (self or cross, GQA, optional RoPE, KV cache) on llmkernels ops."""

from __future__ import annotations

import torch

import llmkernels
from llmkernels.nn import torch_baseline
from llmkernels.nn.kv_cache import KVCache
from llmkernels.nn.linear import Linear


class Attention(torch.nn.Module):
    """``forward(x, context=None, position_ids=None, kv_cache=None, key_padding_mask=None) -> (batch, seq, d_model)``.

    Self-attention over x (causal when ``causal``), or cross-attention to ``context`` (never causal).
    ``rotary`` is an ``llmkernels.nn.RotaryEmbedding`` applied to q and k in self-attention; one
    may be shared by every layer of a model. ``position_ids`` defaults to the positions after
    what ``kv_cache`` holds. With a ``KVCache``, new keys/values are appended and the queries
    attend to all of them; causal attention then aligns bottom-right (query i is the cache length
    + i), which is decoding. ``key_padding_mask`` (batch, keys) bool, True = attend, masks padded
    keys (of x, of ``context`` in cross-attention, of the whole cache with a ``KVCache``); a query
    that sees no key gets zeros.

    ``context`` may also be ``(k, v)`` from ``context_keys_values(context)``: the projected keys and
    values of a cross-attention context, computed once and reused at every decoding step. The
    context's batch may be a divisor of x's: each context row then serves that many consecutive rows of x (the beams
    of one sentence), whose queries are attended as one problem of the context's batch (no
    attention is causal across x's rows, so this is exact) rather than the context copied per row.

    ``fused_kv=True`` projects keys and values with one matrix, ``kv_proj`` (one GEMM instead of
    two; its rows are all keys, then all values), instead of ``k_proj`` and ``v_proj``.
    ``ops="torch"`` computes the attention with ``F.scaled_dot_product_attention`` (the baseline;
    no softcap or window there); the parameters are the same either way.
    """

    def __init__(self, d_model, n_heads, n_kv_heads=None, causal=True, rotary=None, bias=False, softcap=None,
                 window=(-1, -1), *, fused_kv=False, ops="llmkernels"):
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
        self.ops = torch_baseline.check_ops(ops)
        torch_baseline.unsupported(ops, softcap=softcap, window=tuple(window) != (-1, -1))
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.causal, self.rotary, self.softcap, self.window = causal, rotary, softcap, window
        self.fused_kv = fused_kv
        kv_width = n_kv_heads * self.head_dim
        self.q_proj = Linear(d_model, n_heads * self.head_dim, bias=bias, ops=ops)
        if fused_kv:
            self.kv_proj = Linear(d_model, 2 * kv_width, bias=bias, ops=ops)
        else:
            self.k_proj = Linear(d_model, kv_width, bias=bias, ops=ops)
            self.v_proj = Linear(d_model, kv_width, bias=bias, ops=ops)
        self.o_proj = Linear(n_heads * self.head_dim, d_model, bias=bias, ops=ops)

    def _heads(self, x, heads):
        batch, seq, _ = x.shape
        return x.view(batch, seq, heads, self.head_dim).transpose(1, 2)

    def _keys_values(self, source):
        if not self.fused_kv:
            return self._heads(self.k_proj(source), self.n_kv_heads), self._heads(self.v_proj(source), self.n_kv_heads)
        batch, seq, _ = source.shape
        # (batch, seq, 2, heads, dim) -> k and v as (batch, heads, seq, dim) views, no copy.
        return self.kv_proj(source).view(batch, seq, 2, self.n_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def context_keys_values(self, context):
        """The keys and values of a cross-attention ``context``, (batch, heads_kv, seq, head_dim) each."""
        k, v = self._keys_values(context)
        return k, v

    def forward(self, x, context=None, position_ids=None, kv_cache: KVCache | None = None, key_padding_mask=None):
        batch, seq, _ = x.shape
        self_attention = context is None
        k, v = context if isinstance(context, tuple) else self._keys_values(x if self_attention else context)
        shared = 1 if self_attention else self._rows_per_context(batch, k.shape[0])
        # Consecutive rows that share a context row are one problem: (batch, seq) -> (batch / shared, shared * seq).
        q = self._heads(self.q_proj(x).view(batch // shared, shared * seq, -1), self.n_heads)
        if self.rotary is not None and self_attention:
            if position_ids is None:
                start = len(kv_cache) if kv_cache is not None else 0
                position_ids = torch.arange(start, start + seq, device=x.device)
            q, k = self.rotary(q, k, position_ids)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        causal = self.causal and self_attention
        if self.ops == "torch":
            out = torch_baseline.attention(q, k, v, causal, key_padding_mask)
        else:
            out = llmkernels.attention(q, k, v, causal=causal, softcap=self.softcap, window=self.window,
                                       key_padding_mask=key_padding_mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))

    @staticmethod
    def _rows_per_context(batch: int, context_batch: int) -> int:
        if context_batch < 1 or batch % context_batch:
            raise ValueError(f"context holds {context_batch} rows; x's batch of {batch} must be a multiple of it")
        return batch // context_batch

    def extra_repr(self):
        return (f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, causal={self.causal}, "
                f"fused_kv={self.fused_kv}, ops={self.ops!r}")
