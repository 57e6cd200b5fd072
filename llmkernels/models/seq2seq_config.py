"""The encoder-decoder's configuration and its size presets."""

from __future__ import annotations

import dataclasses

from llmkernels.models.dict_config import DictConfig, is_positive_int
from llmkernels.models.gpt_config import check_heads_positions_ops


@dataclasses.dataclass
class Seq2SeqConfig(DictConfig):
    src_vocab_size: int = 1024
    tgt_vocab_size: int = 1024
    shared_vocab: bool = True  # one embedding for source, target and the (tied) output projection
    d_model: int = 128
    n_enc_layer: int = 3
    n_dec_layer: int = 3
    n_head: int = 4
    n_kv_head: int = 4
    mlp_hidden: int = 384
    max_src_len: int = 64
    max_tgt_len: int = 64  # decoder positions, the start token included
    positional: str = "sinusoidal"
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    bos_id: int = 0  # the decoder's start token
    eos_id: int = 0  # ends a target (the tokenizer's end-of-text: the same id as the start may be)
    ops: str = "llmkernels"

    def __post_init__(self):
        self.check_types()
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_enc_layer", "n_dec_layer", "n_head",
                     "n_kv_head", "mlp_hidden", "max_src_len", "max_tgt_len"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"Seq2SeqConfig.{name} must be a positive int; got {getattr(self, name)!r}")
        if self.shared_vocab and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"shared_vocab needs src_vocab_size == tgt_vocab_size; got {self.src_vocab_size} "
                             f"and {self.tgt_vocab_size}")
        check_heads_positions_ops(self)
        for name in ("bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ValueError(f"{name} must be a target token id in [0, {self.tgt_vocab_size}); got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


# nano: the tests' size. small: `llmkernels translate-train`'s default (~0.27M parameters with a
# 400-token shared vocabulary), sized to learn number words within minutes on two CPU cores.
# base: the original Transformer's shape scaled down, for real sentence pairs (--data).
SEQ2SEQ_PRESETS = {
    "nano": dict(d_model=32, n_enc_layer=1, n_dec_layer=1, n_head=2, n_kv_head=2, mlp_hidden=64),
    "small": dict(d_model=64, n_enc_layer=2, n_dec_layer=2, n_head=4, n_kv_head=4, mlp_hidden=192),
    "base": dict(d_model=128, n_enc_layer=3, n_dec_layer=3, n_head=4, n_kv_head=4, mlp_hidden=384),
}
