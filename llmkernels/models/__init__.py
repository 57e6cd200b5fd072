"""Models built from the llmkernels.nn modules."""

from llmkernels.models.encoder import Encoder
from llmkernels.models.encoder_config import EncoderConfig
from llmkernels.models.gpt import GPT
from llmkernels.models.gpt_config import PRESETS, GPTConfig, preset
from llmkernels.models.seq2seq import Seq2Seq
from llmkernels.models.seq2seq_config import SEQ2SEQ_PRESETS, Seq2SeqConfig
from llmkernels.nn import OPS


def build(config: GPTConfig):
    """The model a config describes: an ``Encoder`` for an ``EncoderConfig``, else a ``GPT``."""
    return Encoder(config) if isinstance(config, EncoderConfig) else GPT(config)


__all__ = ["Encoder", "EncoderConfig", "GPT", "GPTConfig", "OPS", "PRESETS", "SEQ2SEQ_PRESETS", "Seq2Seq",
           "Seq2SeqConfig", "build", "preset"]
