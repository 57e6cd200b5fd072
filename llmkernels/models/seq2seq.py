"""An encoder-decoder transformer (the original Transformer's shape, pre-norm) built from ``llmkernels.nn``.

The encoder attends bidirectionally over the padded source (``key_padding_mask``), the decoder
causally over its own prefix and across to the encoder output: the same ``Attention``, ``RMSNorm``
(residual adds fused in), ``SwiGLUMLP``, positional and loss modules as the GPT, so
``ops="torch"`` runs the same parameters on PyTorch's own functions. Positions are sinusoidal by
default (scaled embeddings plus the table, as in "Attention Is All You Need"); ``rope`` rotates
the self-attention queries and keys instead. The loss is ``linear_cross_entropy`` over the tied
output projection (no full logits), padding ignored.

Decoding keeps two caches per decoder layer (``DecoderState``): a ``KVCache`` of the self-attention
keys/values, and the cross-attention keys/values of the encoder output, projected once.
Greedy and beam search are in ``seq2seq_decode``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmkernels.models.seq2seq_config import Seq2SeqConfig
from llmkernels.nn import (
    Attention, KVCache, LinearCrossEntropyLoss, RMSNorm, RotaryEmbedding, SinusoidalPositionEncoding, SwiGLUMLP,
)

IGNORE = -100  # target id of padding: the loss skips it


class EncoderBlock(nn.Module):
    """Pre-norm self-attention (bidirectional, padding masked) and MLP; ``(x, residual)`` in and out as the GPT's Block."""

    def __init__(self, config: Seq2SeqConfig, rotary):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)
        self.attn = Attention(config.d_model, config.n_head, config.n_kv_head, causal=False, rotary=rotary,
                              fused_kv=True, ops=config.ops)
        self.mlp_norm = RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)
        self.mlp = SwiGLUMLP(config.d_model, config.mlp_hidden, ops=config.ops)

    def forward(self, x, positions, mask, residual=None):
        normed, residual = (self.attn_norm(x), x) if residual is None else self.attn_norm(x, residual=residual)
        normed, residual = self.mlp_norm(self.attn(normed, position_ids=positions, key_padding_mask=mask), residual=residual)
        return self.mlp(normed), residual


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, MLP, each pre-norm."""

    def __init__(self, config: Seq2SeqConfig, rotary):
        super().__init__()
        norm = lambda: RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)  # noqa: E731
        self.self_norm, self.cross_norm, self.mlp_norm = norm(), norm(), norm()
        self.self_attn = Attention(config.d_model, config.n_head, config.n_kv_head, causal=True, rotary=rotary,
                                   fused_kv=True, ops=config.ops)
        self.cross_attn = Attention(config.d_model, config.n_head, config.n_kv_head, causal=False, fused_kv=True,
                                    ops=config.ops)
        self.mlp = SwiGLUMLP(config.d_model, config.mlp_hidden, ops=config.ops)

    def forward(self, x, positions, memory, memory_mask, cache: KVCache | None, residual=None):
        """``memory``: the encoder output, or its (k, v) for this layer (``DecoderState``)."""
        normed, residual = (self.self_norm(x), x) if residual is None else self.self_norm(x, residual=residual)
        attended = self.self_attn(normed, position_ids=positions, kv_cache=cache)
        normed, residual = self.cross_norm(attended, residual=residual)
        crossed = self.cross_attn(normed, context=memory, key_padding_mask=memory_mask)
        normed, residual = self.mlp_norm(crossed, residual=residual)
        return self.mlp(normed), residual


class DecoderState:
    """What decoding carries from step to step: per layer, the cross-attention (k, v) of the encoder
    output (computed once) and the self-attention ``KVCache``; ``reorder`` follows beam search.

    ``memory`` holds one row per sentence; the decoder may step several consecutive rows of each
    (its beams): they share the sentence's cross-attention keys and values, which are
    neither copied per beam nor moved when the beams are reordered."""

    def __init__(self, model: "Seq2Seq", memory, memory_mask, max_len: int):
        self.memory_mask = memory_mask
        self.cross = [block.cross_attn.context_keys_values(memory) for block in model.decoder]
        self.caches = [KVCache(max_len) for _ in model.decoder]

    def __len__(self):
        return len(self.caches[0])

    def reorder(self, index):
        """Rows ``index`` of the decoder's batch, each from its own sentence's rows (the cross keys stay)."""
        for cache in self.caches:
            cache.reorder(index)


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        c = config
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.src_embed = self.tgt_embed if c.shared_vocab else nn.Embedding(c.src_vocab_size, c.d_model)
        self.rotary = None
        if c.positional == "rope":
            self.rotary = RotaryEmbedding(c.head_dim, max(c.max_src_len, c.max_tgt_len), base=c.rope_base, ops=c.ops)
        self.positional = None
        if c.positional == "sinusoidal":  # embeddings * sqrt(d_model) + the table, the original recipe
            self.positional = SinusoidalPositionEncoding(c.d_model, scale=math.sqrt(c.d_model),
                                                         max_positions=max(c.max_src_len, c.max_tgt_len), ops=c.ops)
        self.encoder = nn.ModuleList(EncoderBlock(c, self.rotary) for _ in range(c.n_enc_layer))
        self.encoder_norm = RMSNorm(c.d_model, eps=c.norm_eps, ops=c.ops)
        self.decoder = nn.ModuleList(DecoderBlock(c, self.rotary) for _ in range(c.n_dec_layer))
        self.decoder_norm = RMSNorm(c.d_model, eps=c.norm_eps, ops=c.ops)
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self.lm_head.weight = self.tgt_embed.weight
        self.criterion = LinearCrossEntropyLoss(ignore_index=IGNORE, ops=c.ops)
        self.checkpoint_activations = False  # set by the training loop; not used by this model
        self._init_weights()

    def _init_weights(self):
        c = self.config
        residual_std = c.init_std / math.sqrt(2 * (c.n_enc_layer + c.n_dec_layer))
        # Scaled by sqrt(d_model) on the way in, the embeddings start at unit size, as the table does.
        embed_std = c.d_model ** -0.5 if c.positional == "sinusoidal" else c.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)
            elif name.endswith("embed.weight"):
                nn.init.normal_(p, 0.0, embed_std)
            elif name.endswith(("o_proj.weight", "down.weight")):
                nn.init.normal_(p, 0.0, residual_std)
            else:
                nn.init.normal_(p, 0.0, c.init_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def ops(self) -> str:
        return self.config.ops

    def _embed(self, table, ids, start: int, limit: int, side: str):
        seq = ids.shape[1]
        if start + seq > limit:
            raise ValueError(f"{side} of {start + seq} tokens exceeds max_{side}_len {limit}")
        positions = torch.arange(start, start + seq, device=ids.device)
        x = table(ids)
        return (x if self.positional is None else self.positional(x, positions)), positions

    def encode(self, src, src_mask=None):
        """The encoder output (batch, src_len, d_model) of ``src`` ids; ``src_mask`` (batch, src_len) bool, True = token."""
        x, positions = self._embed(self.src_embed, src, 0, self.config.max_src_len, "src")
        residual = None
        for block in self.encoder:
            x, residual = block(x, positions, src_mask, residual)
        return self.encoder_norm(x) if residual is None else self.encoder_norm(x, residual=residual)[0]

    def decode_hidden(self, tgt_in, memory, memory_mask=None, state: DecoderState | None = None):
        """Decoder output (batch, tgt_len, d_model) for the target prefix ``tgt_in``: the whole prefix
        over ``memory`` (no state), or the new tokens after what ``state`` holds."""
        start = len(state) if state is not None else 0
        x, positions = self._embed(self.tgt_embed, tgt_in, start, self.config.max_tgt_len, "tgt")
        residual = None
        for layer, block in enumerate(self.decoder):
            if state is None:
                x, residual = block(x, positions, memory, memory_mask, None, residual)
            else:
                x, residual = block(x, positions, state.cross[layer], state.memory_mask, state.caches[layer], residual)
        return self.decoder_norm(x) if residual is None else self.decoder_norm(x, residual=residual)[0]

    def start_decoding(self, memory, memory_mask=None, max_len: int | None = None) -> DecoderState:
        return DecoderState(self, memory, memory_mask, max_len or self.config.max_tgt_len)

    def logits(self, src, src_mask, tgt_in):
        """Teacher-forced logits (batch, tgt_len, tgt_vocab) of every target position."""
        return self.lm_head(self.decode_hidden(tgt_in, self.encode(src, src_mask), src_mask))

    def forward(self, src, src_mask, tgt_in, tgt_out):
        """Mean cross-entropy of ``tgt_out`` (``IGNORE`` = -100 at padding) given ``src`` and the shifted ``tgt_in``."""
        src_mask = None if bool(src_mask.all()) else src_mask  # no padding: the unmasked kernels
        hidden = self.decode_hidden(tgt_in, self.encode(src, src_mask), src_mask)
        return self.criterion(hidden.reshape(-1, hidden.shape[-1]), self.lm_head.weight, tgt_out.reshape(-1))
