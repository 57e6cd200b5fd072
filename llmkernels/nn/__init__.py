"""Modules built on the llmkernels ops."""

from llmkernels.nn.positional import RotaryEmbedding, SinusoidalPositionEncoding

__all__ = ["RotaryEmbedding", "SinusoidalPositionEncoding"]
