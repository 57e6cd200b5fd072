"""Modules built on the llmkernels ops."""

from llmkernels.nn.losses import CrossEntropyLoss, LinearCrossEntropyLoss
from llmkernels.nn.positional import RotaryEmbedding, SinusoidalPositionEncoding

__all__ = ["CrossEntropyLoss", "LinearCrossEntropyLoss", "RotaryEmbedding", "SinusoidalPositionEncoding"]
