"""Models built from the llmkernels.nn modules."""

from llmkernels.models.encoder import Encoder
from llmkernels.models.encoder_config import EncoderConfig
from llmkernels.models.gpt import GPT
from llmkernels.models.gpt_config import PRESETS, GPTConfig, preset
from llmkernels.nn import OPS

__all__ = ["Encoder", "EncoderConfig", "GPT", "GPTConfig", "OPS", "PRESETS", "preset"]
