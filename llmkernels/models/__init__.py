"""Models built on the llmkernels ops."""

from llmkernels.models.gpt import GPT, OPS, PRESETS, GPTConfig, KVCache, preset

__all__ = ["GPT", "GPTConfig", "KVCache", "OPS", "PRESETS", "preset"]
