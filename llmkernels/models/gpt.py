"""A decoder-only transformer (pre-norm RMSNorm, GQA, RoPE or sinusoidal, SwiGLU) on the llmkernels ops.

``ops="llmkernels"`` routes rotary, attention and the loss through ``llmkernels.apply_rotary``,
``llmkernels.attention`` and ``llmkernels.linear_cross_entropy`` (fused, no full logits);
``ops="torch"`` builds the same model on PyTorch's own functions (HF ``rotate_half`` RoPE,
``F.scaled_dot_product_attention``, ``F.cross_entropy`` on full logits): the baseline. The choice
changes only the forward, never the parameters, so the same seed gives the same weights in both.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

import llmkernels

OPS = ("llmkernels", "torch")
POSITIONAL = ("rope", "sinusoidal")


@dataclasses.dataclass
class GPTConfig:
    vocab_size: int = 8192
    max_seq_len: int = 128
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2
    mlp_hidden: int = 352
    positional: str = "rope"
    rope_base: float = 10000.0
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    init_std: float = 0.02
    ops: str = "llmkernels"

    def __post_init__(self):
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layer", "n_head", "n_kv_head", "mlp_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive int; got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if self.positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {POSITIONAL}; got {self.positional!r}")
        if self.positional == "rope" and self.head_dim % 2:
            raise ValueError(f"rope needs an even head_dim; got {self.head_dim}")
        if self.ops not in OPS:
            raise ValueError(f"ops must be one of {OPS}; got {self.ops!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {unknown}")
        return cls(**values)


# tiny: ~1.8M parameters (8192 vocab, tied), 60 steps of 16x128 tokens in about a minute on 2 cores.
# small: ~11M parameters, for seq 512.
PRESETS = {
    "tiny": dict(max_seq_len=128, d_model=128, n_layer=4, n_head=4, n_kv_head=2, mlp_hidden=352),
    "small": dict(max_seq_len=512, d_model=384, n_layer=5, n_head=6, n_kv_head=2, mlp_hidden=1024),
}


def preset(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return GPTConfig(**{**PRESETS[name], **overrides})


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _torch_rotary(q, k, cos, sin, positions):
    """Hugging Face's rotate_half RoPE: tables (max_pos, dim/2) expanded to the full head_dim."""
    cos = torch.cat((cos, cos), dim=-1)[positions].to(q.dtype)
    sin = torch.cat((sin, sin), dim=-1)[positions].to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _torch_attention(q, k, v):
    """Causal attention aligned bottom-right (the last query sees every key), as a KV cache needs."""
    seq_q, seq_k = q.shape[-2], k.shape[-2]
    if k.shape[1] != q.shape[1]:
        repeat = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(repeat, dim=1)
        v = v.repeat_interleave(repeat, dim=1)
    if seq_q == seq_k:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if seq_q == 1:
        return F.scaled_dot_product_attention(q, k, v)
    rows = torch.arange(seq_q, device=q.device)[:, None] + (seq_k - seq_q)
    mask = torch.arange(seq_k, device=q.device)[None, :] <= rows
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class KVCache:
    """Per-layer key/value buffers (batch, kv_heads, max_len, head_dim) filled left to right.

    Each buffer takes the dtype of the first keys written to it (bf16 under autocast).
    """

    def __init__(self, config: GPTConfig, batch: int, max_len: int, device):
        self.shape = (batch, config.n_kv_head, max_len, config.head_dim)
        self.device = device
        self.keys = [None] * config.n_layer
        self.values = [None] * config.n_layer
        self.length = 0
        self.max_len = max_len

    def append(self, layer: int, k, v):
        if self.keys[layer] is None:
            self.keys[layer] = torch.zeros(self.shape, device=self.device, dtype=k.dtype)
            self.values[layer] = torch.zeros(self.shape, device=self.device, dtype=v.dtype)
        start, end = self.length, self.length + k.shape[-2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class Attention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        kv_width = config.n_kv_head * config.head_dim
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.kv_proj = nn.Linear(config.d_model, 2 * kv_width, bias=False)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x, rope, positions, cache: KVCache | None, layer: int):
        c = self.config
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, c.n_head, c.head_dim).transpose(1, 2)
        k, v = self.kv_proj(x).view(batch, seq, 2, c.n_kv_head, c.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            cos, sin = rope
            if c.ops == "torch":
                q, k = _torch_rotary(q, k, cos, sin, positions)
            else:
                q, k = llmkernels.apply_rotary(q, k, cos, sin, positions)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        if c.ops == "torch":
            y = _torch_attention(q, k, v)
        else:
            y = llmkernels.attention(q, k, v, causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(batch, seq, c.d_model))


class SwiGLU(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, rope, positions, cache, layer):
        x = x + self.attn(self.attn_norm(x), rope, positions, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        if config.positional == "rope":
            cos, sin = llmkernels.rope_cache(config.max_seq_len, config.head_dim, base=config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()

    def _init_weights(self):
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)
            elif name.endswith(("o_proj.weight", "down.weight")):
                nn.init.normal_(p, 0.0, residual_std)
            else:
                nn.init.normal_(p, 0.0, std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def ops(self) -> str:
        return self.config.ops

    def _hidden(self, idx, cache: KVCache | None = None):
        c = self.config
        seq = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + seq > c.max_seq_len:
            raise ValueError(f"sequence of {start + seq} tokens exceeds max_seq_len {c.max_seq_len}")
        positions = torch.arange(start, start + seq, device=idx.device)
        x = self.embed(idx)
        rope = None
        if c.positional == "rope":
            rope = (self.rope_cos, self.rope_sin)
        elif c.ops == "torch":
            table = llmkernels.sinusoidal_table(c.max_seq_len, c.d_model, device=idx.device)
            x = x + table[positions].to(x.dtype)
        else:
            x = llmkernels.add_sinusoidal_position_encoding(x, positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, positions, cache, layer)
        if cache is not None:
            cache.length += seq
        return self.norm(x)

    def forward(self, idx, targets=None, ignore_index: int = -100):
        """Mean next-token loss when ``targets`` (batch, seq) is given, else the last position's logits."""
        hidden = self._hidden(idx)
        if targets is None:
            return self.lm_head(hidden[:, -1])
        return self.loss(hidden, targets, ignore_index)

    def loss(self, hidden, targets, ignore_index: int = -100):
        flat = hidden.reshape(-1, hidden.shape[-1])
        targets = targets.reshape(-1)
        if self.config.ops == "torch":
            logits = F.linear(flat, self.lm_head.weight)
            return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)
        return llmkernels.linear_cross_entropy(flat, self.lm_head.weight, targets, ignore_index=ignore_index)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, generator=None):
        """Sample ``max_new_tokens`` after ``idx`` (batch, seq) with a KV cache; returns (batch, seq + new).

        ``temperature=0`` is greedy. When the context outgrows ``max_seq_len`` the cache is rebuilt
        from the last ``max_seq_len // 2`` tokens.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0; got {temperature}")
        c = self.config
        out = idx
        param = self.embed.weight
        cache, pending = None, idx[:, -c.max_seq_len:]
        for _ in range(max_new_tokens):
            if cache is None or cache.length + pending.shape[1] > c.max_seq_len:
                cache = KVCache(c, idx.shape[0], c.max_seq_len, param.device)
                pending = out[:, -max(1, c.max_seq_len // 2):] if out.shape[1] > c.max_seq_len else out
            logits = self.lm_head(self._hidden(pending, cache)[:, -1]).float()
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            out = torch.cat((out, nxt), dim=1)
            pending = nxt
        return out
