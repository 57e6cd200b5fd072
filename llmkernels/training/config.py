"""Training configuration: one dataclass, presets, JSON round trip and the resume compatibility check."""

from __future__ import annotations

import dataclasses
import os

from llmkernels.models import OPS, PRESETS as MODEL_PRESETS, EncoderConfig, GPTConfig
from llmkernels.models.dict_config import DictConfig, is_positive_int


class TrainingError(Exception):
    """Bad input a user can fix (missing data, incompatible resume, corrupt checkpoint): one line, no traceback."""


TOKENIZERS = ("bpe", "bytes")
# `llmkernels distill`'s defaults (training/distill.py; here so the CLI reads them without importing
# the [train] extra): temperature 1 (on short budgets a softer target costs the student more than it
# teaches), forward KL, half the next-token cross-entropy.
DISTILL_DEFAULTS = {"temperature": 1.0, "beta": 0.0, "hard_weight": 0.5}
DEVICES = ("auto", "cpu", "cuda")
# What each --model trains: its objectives, the first the default. An encoder pre-trains with masked
# language modelling; "classify" is `llmkernels finetune-classify`'s (training/classify.py).
OBJECTIVES = {"gpt": ("clm",), "encoder": ("mlm", "classify")}

# Per-preset training defaults on top of the model presets in llmkernels.models.gpt_config.
TRAIN_PRESETS = {
    "nano": dict(batch_size=16, lr=3e-3, steps=200, eval_every=100),
    "tiny": dict(batch_size=16, lr=3e-3, steps=300, eval_every=100),
    "small": dict(batch_size=8, lr=1e-3, steps=1000, eval_every=200),
}

# Masked-language modelling (training/mlm.py) scores 40% of the tokens, not every one as next-token
# prediction does, so its steps take twice the preset's windows: on the tiny encoder's 200 steps
# that took it off its unigram plateau (masked-token val perplexity 375 -> 67, seed 1) and made the
# classifier fine-tuned from it beat scratch (benchmarks/classify_quality.py).
MLM_BATCH_FACTOR = 2


@dataclasses.dataclass
class TrainConfig(DictConfig):
    unknown_fields_error = TrainingError

    preset: str = "tiny"
    data: str | None = None  # None: the Python standard library's own .py files
    tokenizer: str = "bpe"
    vocab_size: int = 8192  # requested BPE vocabulary (the model takes the trained size)
    seq_len: int | None = None  # None: the preset's max_seq_len
    batch_size: int = 16  # sequences per micro-batch per process
    grad_accum: int = 1
    steps: int = 300  # schedule length
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None  # None: steps // 10
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    eval_batches: int = 8
    save_every: int | None = None  # None: at each evaluation and at the end
    sample_tokens: int = 64
    val_fraction: float = 0.05
    bf16: bool = False
    fsdp: bool = False  # FSDP2 (fully_shard per block) instead of DDP under torchrun
    checkpoint_activations: bool = False  # recompute each block's activations in the backward
    ops: str = "llmkernels"
    backend: str = "auto"
    device: str = "auto"
    model: dict = dataclasses.field(default_factory=dict)  # GPTConfig overrides (d_model, n_layer, ...)
    architecture: str = "gpt"  # --model: "gpt" (decoder) or "encoder"
    objective: str = "clm"  # next-token (clm), masked-token (mlm) or classification (classify)

    def validate(self) -> None:
        self.check_types()
        if self.preset not in MODEL_PRESETS:
            raise TrainingError(f"unknown preset {self.preset!r}; choose one of {', '.join(sorted(MODEL_PRESETS))}")
        if self.tokenizer not in TOKENIZERS:
            raise TrainingError(f"unknown tokenizer {self.tokenizer!r}; choose bpe or bytes")
        if self.ops not in OPS:
            raise TrainingError(f"unknown ops {self.ops!r}; choose one of {', '.join(OPS)}")
        if self.architecture not in OBJECTIVES:
            raise TrainingError(f"unknown model {self.architecture!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.objective not in OBJECTIVES[self.architecture]:
            other = next((a for a, o in OBJECTIVES.items() if self.objective in o), None)
            fix = f"pass --model {other}" if other else f"choose {' or '.join(OBJECTIVES[self.architecture])}"
            raise TrainingError(f"--objective {self.objective} does not train --model {self.architecture}: {fix}")
        if self.device not in DEVICES:
            raise TrainingError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        import llmkernels

        if self.backend != "auto" and self.backend not in llmkernels.BACKEND_NAMES:
            raise TrainingError(
                f"unknown backend {self.backend!r}; choose auto or one of {', '.join(llmkernels.BACKEND_NAMES)}"
            )
        positive = ("vocab_size", "batch_size", "grad_accum", "steps", "log_every", "eval_every", "eval_batches")
        for name in positive + ("seq_len", "save_every"):
            value = getattr(self, name)
            if value is None and name not in positive:
                continue
            if not is_positive_int(value):
                raise TrainingError(f"--{name.replace('_', '-')} must be a positive integer; got {value!r}")
        if self.tokenizer == "bpe" and not 257 <= self.vocab_size <= 65535:
            raise TrainingError(f"--vocab-size must be in [257, 65535] for bpe; got {self.vocab_size}")
        if not 0 < self.val_fraction < 1:
            raise TrainingError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        if self.lr <= 0 or self.grad_clip < 0 or self.warmup_steps is not None and self.warmup_steps < 0:
            raise TrainingError("lr must be > 0, grad_clip and warmup_steps >= 0")
        try:
            self.model_config(vocab_size=300)
        except (TypeError, ValueError) as e:
            raise TrainingError(f"bad model settings: {e}") from None

    @property
    def context(self) -> int:
        return self.seq_len or MODEL_PRESETS[self.preset]["max_seq_len"]

    @property
    def warmup(self) -> int:
        return self.steps // 10 if self.warmup_steps is None else self.warmup_steps

    @property
    def model_config_class(self) -> type[GPTConfig]:
        return EncoderConfig if self.architecture == "encoder" else GPTConfig

    @property
    def mask_token(self) -> bool:
        """An encoder's tokenizer has a mask token (for MLM, and so that a fine-tuned classifier
        reads text exactly as its pre-trained encoder did)."""
        return self.architecture == "encoder"

    def model_config(self, vocab_size: int) -> GPTConfig:
        values = {**MODEL_PRESETS[self.preset], **self.model, "vocab_size": vocab_size, "ops": self.ops}
        values["max_seq_len"] = self.context
        return self.model_config_class(**values)


def build(preset: str = "tiny", **overrides) -> TrainConfig:
    """The preset's defaults with ``overrides`` (entries that are None are ignored)."""
    if preset not in TRAIN_PRESETS:
        raise TrainingError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(TRAIN_PRESETS))}")
    values = {**TRAIN_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if "objective" not in values and values.get("architecture", "gpt") in OBJECTIVES:
        values["objective"] = OBJECTIVES[values.get("architecture", "gpt")][0]
    if values.get("objective") == "mlm" and overrides.get("batch_size") is None:
        values["batch_size"] = MLM_BATCH_FACTOR * TRAIN_PRESETS[preset]["batch_size"]
    if "data" in values and values["data"] is not None:
        values["data"] = os.path.abspath(values["data"])
    config = TrainConfig(preset=preset, **values)
    config.validate()
    return config


# What a resumed run may change: how it is watched and run, never what it computes, except that
# ``steps`` may grow the schedule (a resumed run is then bit-exact only with the original steps).
RESUMABLE = {"steps", "log_every", "eval_every", "eval_batches", "save_every", "sample_tokens", "backend",
             "checkpoint_activations"}


def merge_for_resume(saved: TrainConfig, given: dict) -> TrainConfig:
    """The saved config with the explicitly given flags; a flag that would change the run is an error."""
    changed = {}
    for name, value in given.items():
        if value is None or name == "preset" and value == saved.preset:
            continue
        if name == "data":
            value = os.path.abspath(value)
        if getattr(saved, name) != value:
            if name not in RESUMABLE:
                flag = "model" if name == "architecture" else name.replace("_", "-")
                raise TrainingError(f"cannot resume: --{flag} {value!r} differs from the run's {getattr(saved, name)!r}")
            changed[name] = value
    merged = dataclasses.replace(saved, **changed)
    merged.validate()
    return merged
