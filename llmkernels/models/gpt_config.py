"""The GPT's configuration and its size presets."""

from __future__ import annotations

import dataclasses

from llmkernels.models.dict_config import DictConfig, is_positive_int
from llmkernels.nn import OPS

POSITIONAL = ("rope", "sinusoidal")


def check_heads_positions_ops(config) -> None:
    """The checks every transformer config shares (the GPT's, the Seq2Seq's): head counts, position encoding, ops."""
    if config.d_model % config.n_head:
        raise ValueError(f"d_model ({config.d_model}) must be a multiple of n_head ({config.n_head})")
    if config.n_head % config.n_kv_head:
        raise ValueError(f"n_head ({config.n_head}) must be a multiple of n_kv_head ({config.n_kv_head})")
    if config.positional not in POSITIONAL:
        raise ValueError(f"positional must be one of {POSITIONAL}; got {config.positional!r}")
    if config.positional == "rope" and config.head_dim % 2:
        raise ValueError(f"rope needs an even head_dim; got {config.head_dim}")
    if config.ops not in OPS:
        raise ValueError(f"ops must be one of {OPS}; got {config.ops!r}")


@dataclasses.dataclass
class GPTConfig(DictConfig):
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
    ops: str = "llmkernels"  # "torch": the same model on PyTorch's own functions (see llmkernels.nn)

    def __post_init__(self):
        self.check_types()
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layer", "n_head", "n_kv_head", "mlp_hidden"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"GPTConfig.{name} must be a positive int; got {getattr(self, name)!r}")
        check_heads_positions_ops(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


# tiny: ~1.8M parameters (8192 vocab, tied), 60 steps of 16x128 tokens in about a minute on 2 cores.
# small: ~11M parameters, for seq 512.
PRESETS = {  # smallest first: a distilled student defaults to the preset before its teacher's
    "nano": dict(max_seq_len=128, d_model=64, n_layer=2, n_head=4, n_kv_head=2, mlp_hidden=176),
    "tiny": dict(max_seq_len=128, d_model=128, n_layer=4, n_head=4, n_kv_head=2, mlp_hidden=352),
    "small": dict(max_seq_len=512, d_model=384, n_layer=5, n_head=6, n_kv_head=2, mlp_hidden=1024),
}


def preset(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return GPTConfig(**{**PRESETS[name], **overrides})
