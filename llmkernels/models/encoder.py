"""A bidirectional encoder (BERT-style, pre-norm, RMSNorm, SwiGLU) built from the GPT's blocks.

The blocks are ``gpt.Block`` with ``causal=False``: ``llmkernels.nn.Attention`` sees every key
but the padded ones (``key_padding_mask``). Positions are RoPE or sinusoidal (``positional``), as
the GPT's. Two heads:

* masked-language modelling (the MLM model, ``num_labels=0``): ``mlm_loss(idx, labels)``, labels
  -100 where nothing was masked, over the output projection and ``mlm_bias``,
  through ``LinearCrossEntropyLoss`` (``linear_cross_entropy`` under ``ops="llmkernels"``) on the
  masked positions' rows: the vocabulary-wide logits are never materialised;
* classification (``num_labels > 0``): the final states pooled (mean over the unpadded tokens, or
  the first token), then one linear layer.

Padding is on the right: a real token's position never depends on the padding, so padded
positions change nothing for the real ones (with either position encoding).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from llmkernels.models.encoder_config import EncoderConfig
from llmkernels.models.gpt import Block, init_weights
from llmkernels.nn import (
    CrossEntropyLoss, LinearCrossEntropyLoss, RMSNorm, RotaryEmbedding, SinusoidalPositionEncoding,
)


class Encoder(nn.Module):
    """``forward(idx, labels=None, attention_mask=None)``: without a classification head, the MLM
    loss (``labels`` (batch, seq)) or the final states; with one, the classification loss (``labels``
    (batch,)) or the logits (batch, num_labels). ``attention_mask`` (batch, seq) bool, True = a real
    token; None: no padding."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.rotary = None
        if config.positional == "rope":
            self.rotary = RotaryEmbedding(config.head_dim, config.max_seq_len, base=config.rope_base, ops=config.ops)
        self.positional = None
        if config.positional == "sinusoidal":
            self.positional = SinusoidalPositionEncoding(config.d_model, max_positions=config.max_seq_len, ops=config.ops)
        self.blocks = nn.ModuleList(Block(config, self.rotary, causal=False) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.d_model, eps=config.norm_eps, ops=config.ops)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.criterion = LinearCrossEntropyLoss(ops=config.ops)
        # BERT's decoder bias: the token frequencies live here, not in a direction every hidden state
        # must share (without it the states of a briefly pre-trained encoder all point one way).
        # The MLM model's only: a classifier leaves it out (an unused parameter would stall DDP).
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size)) if not config.num_labels else None
        self.classifier = nn.Linear(config.d_model, config.num_labels) if config.num_labels else None
        self.class_criterion = CrossEntropyLoss(ops=config.ops)
        self.checkpoint_activations = False  # set by the training loop, as the GPT's
        init_weights(self, config.init_std, config.n_layer)
        if self.mlm_bias is not None:
            nn.init.zeros_(self.mlm_bias)
        if self.classifier is not None:
            nn.init.zeros_(self.classifier.bias)

    @property
    def ops(self) -> str:
        return self.config.ops

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, idx, attention_mask=None):
        """The final states (batch, seq, d_model); those of padded positions mean nothing."""
        c = self.config
        if idx.dim() != 2 or idx.shape[1] > c.max_seq_len:
            raise ValueError(f"idx must be (batch, seq) with seq <= max_seq_len {c.max_seq_len}; got {tuple(idx.shape)}")
        if attention_mask is not None and (attention_mask.shape != idx.shape or attention_mask.dtype != torch.bool):
            raise ValueError(f"attention_mask must be a bool tensor shaped like idx {tuple(idx.shape)}; "
                             f"got {attention_mask.dtype} {tuple(attention_mask.shape)}")
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.embed(idx)
        if self.positional is not None:
            x = self.positional(x, positions)
        recompute = self.checkpoint_activations and torch.is_grad_enabled()
        residual = None
        for block in self.blocks:
            if recompute:
                x, residual = checkpoint(block, x, positions, None, residual, attention_mask, use_reentrant=False)
            else:
                x, residual = block(x, positions, None, residual, key_padding_mask=attention_mask)
        return self.norm(x) if residual is None else self.norm(x, residual=residual)[0]

    def mlm_loss(self, idx, labels, attention_mask=None):
        """Mean cross-entropy of the masked positions (``labels`` != -100) against their original tokens.

        Only the rows of positions with a label go to the fused loss (training/mlm.py masks 40%: the
        head's GEMMs shrink 2.5x); the loss is the same as over every row with ``ignore_index`` -100."""
        hidden = self.encode(idx, attention_mask).reshape(-1, self.config.d_model)
        labels = labels.reshape(-1)
        scored = (labels != self.criterion.ignore_index).nonzero().squeeze(1)
        return self.criterion(hidden.index_select(0, scored), self.lm_head.weight, labels.index_select(0, scored),
                              self.mlm_bias)

    def pool(self, hidden, attention_mask=None):
        if self.config.pooling == "first" or hidden.shape[1] == 0:
            return hidden[:, 0]
        if attention_mask is None:
            return hidden.mean(dim=1)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def classify(self, idx, attention_mask=None):
        """Class logits (batch, num_labels)."""
        if self.classifier is None:
            raise ValueError("this encoder has no classification head (num_labels=0)")
        return self.classifier(self.pool(self.encode(idx, attention_mask), attention_mask))

    def forward(self, idx, labels=None, attention_mask=None):
        if self.classifier is not None:
            logits = self.classify(idx, attention_mask)
            return logits if labels is None else self.class_criterion(logits.float(), labels)
        if labels is None:
            return self.encode(idx, attention_mask)
        return self.mlm_loss(idx, labels, attention_mask)
