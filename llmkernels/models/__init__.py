"""Models built from the llmkernels.nn modules."""

from llmkernels.models.gpt import GPT
from llmkernels.models.gpt_config import PRESETS, GPTConfig, preset
from llmkernels.models.seq2seq import Seq2Seq
from llmkernels.models.seq2seq_config import SEQ2SEQ_PRESETS, Seq2SeqConfig
from llmkernels.nn import OPS

__all__ = ["GPT", "GPTConfig", "OPS", "PRESETS", "SEQ2SEQ_PRESETS", "Seq2Seq", "Seq2SeqConfig", "preset"]
