"""Modules built on the llmkernels ops; each takes ``ops="torch"`` to run on PyTorch's own functions instead."""

from llmkernels.nn.attention import Attention
from llmkernels.nn.distillation import (
    DistillationLoss, LinearDistillationLoss, LinearTopKDistillationLoss, TopKDistillationLoss,
)
from llmkernels.nn.kv_cache import KVCache
from llmkernels.nn.linear import Linear
from llmkernels.nn.losses import CrossEntropyLoss, LinearCrossEntropyLoss
from llmkernels.nn.mlp import SwiGLUMLP
from llmkernels.nn.norm import RMSNorm
from llmkernels.nn.positional import RotaryEmbedding, SinusoidalPositionEncoding
from llmkernels.nn.torch_baseline import OPS

__all__ = ["Attention", "KVCache", "CrossEntropyLoss", "DistillationLoss", "Linear", "LinearCrossEntropyLoss",
           "LinearDistillationLoss", "LinearTopKDistillationLoss", "OPS", "RMSNorm", "RotaryEmbedding",
           "SinusoidalPositionEncoding", "SwiGLUMLP", "TopKDistillationLoss"]
