"""A decoder-only transformer (pre-norm RMSNorm, GQA, RoPE or sinusoidal, SwiGLU) built from ``llmkernels.nn``.

Attention, rotary/sinusoidal positions, the norms (residual adds fused in), the gated MLP and the
loss are the ``llmkernels.nn`` modules, built with the config's ``ops``: ``"llmkernels"`` runs the
fused ops (the loss is ``linear_cross_entropy``, no full logits), ``"torch"`` the same model on
PyTorch's own functions (``nn.RMSNorm``'s ``F.rms_norm``, ``F.silu``), the baseline. The choice
changes only the forward, never the parameters, so the same seed gives the same weights in both.
It is fixed when the model is built.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

import llmkernels
from llmkernels.models.gpt_config import GPTConfig
from llmkernels.nn import torch_baseline
from llmkernels.nn import (
    Attention, KVCache, RMSNorm, RotaryEmbedding, SinusoidalPositionEncoding, SwiGLUMLP,
)


class Block(nn.Module):
    """A pre-norm block whose residual adds are fused into the norms: it takes the previous block's
    output and the residual stream apart, ``(x, residual)``, and returns its MLP output and the
    stream before that output is added, which the next norm (or the final one) adds as it normalises.
    ``causal=False`` is the encoder's bidirectional block (``llmkernels.models.Encoder``)."""

    def __init__(self, config: GPTConfig, rotary: RotaryEmbedding | None, causal: bool = True):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)
        # fused_kv: one K/V projection, named kv_proj as in the checkpoints this model has always written.
        self.attn = Attention(config.d_model, config.n_head, config.n_kv_head, causal=causal, rotary=rotary,
                              fused_kv=True, ops=config.ops)
        self.mlp_norm = RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)
        self.mlp = SwiGLUMLP(config.d_model, config.mlp_hidden, ops=config.ops)

    def forward(self, x, positions, cache: KVCache | None, residual=None, key_padding_mask=None):
        # Under autocast the norms write y in the projections' dtype (and h, the stream, in float32)
        # in one pass: no cast kernels either way, forward or backward.
        feed = self.attn_norm.projection_dtype(x)
        if residual is None:  # the first block: the stream is the embedding itself
            normed, residual = self.attn_norm(x, out_dtype=feed), x
        else:
            normed, residual = self.attn_norm(x, residual=residual, out_dtype=feed)
        # The norms' outputs are kept for the projections' weight gradients as recipes (normalise
        # the saved stream again), not as tensors: see RMSNorm.feeding_projections.
        with self.attn_norm.feeding_projections(normed, residual) as normed:
            attended = self.attn(normed, position_ids=positions, kv_cache=cache, key_padding_mask=key_padding_mask)
        normed, residual = self.mlp_norm(attended, residual=residual, out_dtype=feed)
        with self.mlp_norm.feeding_projections(normed, residual) as normed:
            return self.mlp(normed), residual


def init_weights(model: nn.Module, std: float, n_layer: int) -> None:
    """Norm weights 1, matrices N(0, std), the projections into the residual stream scaled down by
    sqrt(2 * n_layer) (GPT-2's rule; shared with the encoder)."""
    residual_std = std / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        if p.dim() < 2:
            nn.init.ones_(p)
        elif name.endswith(("o_proj.weight", "down.weight")):
            nn.init.normal_(p, 0.0, residual_std)
        else:
            nn.init.normal_(p, 0.0, std)


# The loss runs at the training step's memory peak (every activation is alive then), so its logits
# buffer adds to that peak: about 8 MB of logits a chunk (4M in bf16 under autocast), but never under
# 512 rows: every chunk's GEMMs stream the whole (vocab, d_model) head weight, and at the small
# preset's 256 float32 rows the forward GEMM ran at ~127 GFLOP/s inside the step against ~160-166
# for 512 rows alone on the 2-core CPU (the float32 step's peak RSS did not move: 851-866 MB with
# 512-row chunks against 857-879 with 256, fresh processes). At the small preset's 8192-token vocab
# the 1024-row bf16 buffer (16 MB) lifted the bf16 peak by 12-22 MB. Sized in bytes, not logits:
# under bf16 each chunk also adds its weight gradient into the float32 sum, so half as many chunks
# halve those passes for the same buffer.
LOSS_CHUNK_BYTES = 8 << 20


def loss_chunk_rows(vocab_size: int, element_size: int = 4) -> int:
    """Rows per loss chunk for logits of ``element_size`` bytes (the head's input dtype)."""
    return max(512, LOSS_CHUNK_BYTES // (vocab_size * element_size))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        # One table for every layer; its buffers are not persistent, so checkpoints hold no trace of it.
        rotary = None
        if config.positional == "rope":
            rotary = RotaryEmbedding(config.head_dim, config.max_seq_len, base=config.rope_base, ops=config.ops)
        self.rotary = rotary
        self.positional = None
        if config.positional == "sinusoidal":
            self.positional = SinusoidalPositionEncoding(config.d_model, max_positions=config.max_seq_len, ops=config.ops)
        self.blocks = nn.ModuleList(Block(config, rotary) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        # Set by the training loop (--checkpoint-activations): each block's activations are recomputed
        # in the backward instead of kept. A run-time choice, not part of the config or the weights.
        self.checkpoint_activations = False
        self._init_weights()

    def _init_weights(self):
        init_weights(self, self.config.init_std, self.config.n_layer)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def ops(self) -> str:
        return self.config.ops

    def new_kv_caches(self) -> list[KVCache]:
        """One preallocated cache per layer, ``max_seq_len`` long, for sampling under no_grad."""
        return [KVCache(self.config.max_seq_len) for _ in self.blocks]

    def _hidden(self, idx, caches: list[KVCache] | None = None, out_dtype=None):
        """The final norm's output (``out_dtype``, default the stream's dtype) for token ids idx."""
        c = self.config
        seq = idx.shape[1]
        start = len(caches[0]) if caches else 0
        if start + seq > c.max_seq_len:
            raise ValueError(f"sequence of {start + seq} tokens exceeds max_seq_len {c.max_seq_len}")
        # Built once and shared by every layer's rotary.
        positions = torch.arange(start, start + seq, device=idx.device)
        x = self.embed(idx)
        if self.positional is not None:
            x = self.positional(x, positions)
        recompute = self.checkpoint_activations and torch.is_grad_enabled() and not caches
        residual = None
        for layer, block in enumerate(self.blocks):
            if recompute:
                x, residual = checkpoint(block, x, positions, None, residual, use_reentrant=False)
            else:
                x, residual = block(x, positions, caches[layer] if caches else None, residual)
        if residual is None:
            return self.norm(x, out_dtype=out_dtype)
        return self.norm(x, residual=residual, out_dtype=out_dtype)[0]

    def forward(self, idx, targets=None, ignore_index: int = -100):
        """Mean next-token loss when ``targets`` (batch, seq) is given, else the last position's logits."""
        # The head and the loss read the final norm's output in the autocast dtype: written so.
        hidden = self._hidden(idx, out_dtype=self.norm.projection_dtype(self.lm_head.weight))
        if targets is None:
            return self.lm_head(hidden[:, -1])
        return self.loss(hidden, targets, ignore_index)

    def loss(self, hidden, targets, ignore_index: int = -100):
        rows, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        if self.ops == "torch":
            return torch_baseline.cross_entropy(F.linear(rows, self.lm_head.weight), flat_targets, None, ignore_index,
                                                "mean", 0.0, None)
        # The fused loss, its chunk sized on a CPU by the bytes of this call's logits (bf16 under
        # autocast); on a GPU by the op's own rule (chunked_linear.GPU_CHUNK_ROWS).
        chunk = loss_chunk_rows(self.config.vocab_size, rows.element_size()) if rows.device.type == "cpu" else None
        return llmkernels.linear_cross_entropy(rows, self.lm_head.weight, flat_targets, ignore_index=ignore_index,
                                               chunk_size=chunk)

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
        caches, pending = None, idx[:, -c.max_seq_len:]
        for _ in range(max_new_tokens):
            if caches is None or len(caches[0]) + pending.shape[1] > c.max_seq_len:
                caches = self.new_kv_caches()
                pending = out[:, -max(1, c.max_seq_len // 2):] if out.shape[1] > c.max_seq_len else out
            logits = self.lm_head(self._hidden(pending, caches)[:, -1]).float()
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
