"""Modules built on the llmkernels ops."""

from llmkernels.nn.attention import Attention, KVCache
from llmkernels.nn.losses import CrossEntropyLoss, LinearCrossEntropyLoss
from llmkernels.nn.positional import RotaryEmbedding, SinusoidalPositionEncoding

__all__ = ["Attention", "KVCache", "CrossEntropyLoss", "LinearCrossEntropyLoss", "RotaryEmbedding", "SinusoidalPositionEncoding"]
