"""Models built from the llmkernels.nn modules."""

from llmkernels.models.gpt import GPT
from llmkernels.models.gpt_config import PRESETS, GPTConfig, preset
from llmkernels.nn import OPS

__all__ = ["GPT", "GPTConfig", "OPS", "PRESETS", "preset"]
