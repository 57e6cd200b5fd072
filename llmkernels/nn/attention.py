"""Multi-head attention module (self or cross, GQA, optional RoPE, KV cache) on llmkernels ops."""

from __future__ import annotations

import torch

from llmkernels.ops.attention.api import attention


class KVCache:
    """Keys and values seen so far, (batch, heads_kv, seq, head_dim) each; grows as tokens arrive."""

    def __init__(self):
        self.k = None
        self.v = None

    def __len__(self):
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k, v):
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k, self.v = torch.cat((self.k, k), dim=2), torch.cat((self.v, v), dim=2)
        return self.k, self.v


class Attention(torch.nn.Module):
    """``forward(x, context=None, position_ids=None, kv_cache=None) -> (batch, seq, d_model)``.

    Self-attention over x (causal when ``causal``), or cross-attention to ``context`` (never causal).
    ``rotary`` is an ``llmkernels.nn.RotaryEmbedding`` applied to q and k in self-attention.
    With a ``KVCache``, new keys/values are appended and the queries attend to all of them; causal
    attention then aligns bottom-right (query i is the cache length + i), which is decoding.
    """

    def __init__(self, d_model, n_heads, n_kv_heads=None, causal=True, rotary=None, bias=False, softcap=None, window=(-1, -1)):
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.causal, self.rotary, self.softcap, self.window = causal, rotary, softcap, window
        self.q_proj = torch.nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k_proj = torch.nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = torch.nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = torch.nn.Linear(n_heads * self.head_dim, d_model, bias=bias)

    def _heads(self, x, heads):
        batch, seq, _ = x.shape
        return x.view(batch, seq, heads, self.head_dim).transpose(1, 2)

    def forward(self, x, context=None, position_ids=None, kv_cache=None):
        batch, seq, _ = x.shape
        source = x if context is None else context
        q = self._heads(self.q_proj(x), self.n_heads)
        k = self._heads(self.k_proj(source), self.n_kv_heads)
        v = self._heads(self.v_proj(source), self.n_kv_heads)
        if self.rotary is not None and context is None:
            if position_ids is None:
                start = len(kv_cache) if kv_cache is not None else 0
                position_ids = torch.arange(start, start + seq, device=x.device)
            q, k = self.rotary(q, k, position_ids)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        out = attention(q, k, v, causal=self.causal and context is None, softcap=self.softcap, window=self.window)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))
