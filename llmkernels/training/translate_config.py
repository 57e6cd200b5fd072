"""translate-train's options and training defaults: light (no torch, numpy or safetensors import),
so the command line can show them in its help."""

from __future__ import annotations

import dataclasses
import os

from llmkernels.training.config import TrainingError

# translate-train's defaults: the small preset (~0.27M parameters), a batch of 128 pairs, a short
# warm-up and a high peak rate, for en-de to pass 90% test exact match with beam search within 10
# minutes on two CPU cores (README, "Translation"). A calibration run (one thread, a busy machine)
# had 97% greedy exact match on 500 validation sentences at step 750 of 1500 (66% at step 500).
TRAIN_DEFAULTS = dict(steps=1500, batch_size=128, lr=3e-3, warmup_steps=100, eval_every=500, log_every=50,
                      eval_batches=4, weight_decay=0.01, beta2=0.98)


@dataclasses.dataclass
class TranslateOptions:
    pair: str = "en-de"
    data: str | None = None  # a TSV of source<TAB>target instead of number words
    init: str | None = None  # a translation run dir to start from (its weights and tokenizers)
    preset: str = "small"
    # A small BPE: German's compounds then split into their parts ("zweihundert", "neun",
    # "undfünfzig") instead of whole numbers as tokens, each seen rarely (1024 tokens learned far slower).
    vocab_size: int = 400
    shared_vocab: bool = True
    train_pool: int = 100_000
    beam: int = 4
    length_penalty: float = 0.6
    # With ``init``: also train the same model from its random initialisation on the same data and
    # steps (in OUT/scratch), and report whether starting from ``init`` beat it.
    compare_scratch: bool = False

    def validate(self) -> None:
        if self.data is None:
            from llmkernels.training import translate_data

            translate_data.parse_pair(self.pair)
        else:
            self.data = os.path.abspath(self.data)
        from llmkernels.models.seq2seq_config import SEQ2SEQ_PRESETS

        if self.preset not in SEQ2SEQ_PRESETS:
            raise TrainingError(f"unknown preset {self.preset!r}; choose one of {', '.join(SEQ2SEQ_PRESETS)}")
        if not 257 <= self.vocab_size <= 65535:
            raise TrainingError(f"--vocab-size must be in [257, 65535]; got {self.vocab_size}")
        if self.train_pool < 1:
            raise TrainingError(f"--train-pool must be a positive integer; got {self.train_pool}")
        if self.beam < 1 or not self.length_penalty >= 0:
            raise TrainingError(f"--beam must be >= 1 and --length-penalty >= 0; got {self.beam}, {self.length_penalty}")
        if self.compare_scratch and self.init is None:
            raise TrainingError("--compare-scratch compares a fine-tuned run with a scratch one: give --init RUN_DIR")
        if self.init is not None:
            self.init = os.path.abspath(self.init)
            from llmkernels.training.translate import read_translation_run

            read_translation_run(self.init)
