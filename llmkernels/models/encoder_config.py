"""The encoder's configuration: the GPT's fields (same presets, same flags) plus its heads."""

from __future__ import annotations

import dataclasses

from llmkernels.models.gpt_config import GPTConfig

POOLING = ("mean", "first")


@dataclasses.dataclass
class EncoderConfig(GPTConfig):
    """``GPTConfig``'s shape fields (so ``PRESETS`` and the training flags apply unchanged), plus
    ``pooling`` (``"mean"`` over the unpadded tokens or ``"first"``, the first token's state, which
    the classifier inputs make a start-of-text token) and ``num_labels`` (0: no classification head,
    the MLM model; > 0: a linear head over the pooled state). The MLM head is the output projection,
    tied to the embedding unless ``tie_embeddings`` is False."""

    pooling: str = "mean"
    num_labels: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}; got {self.pooling!r}")
        if isinstance(self.num_labels, bool) or self.num_labels < 0:
            raise ValueError(f"EncoderConfig.num_labels must be an int >= 0; got {self.num_labels!r}")
