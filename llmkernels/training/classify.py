"""Fine-tune the encoder as a classifier: ``llmkernels finetune-classify [--init RUN_DIR] --out DIR``.

The task (``classify_data``): which standard-library package a snippet of source comes from. The
classifier is ``models.Encoder`` with a classification head, trained on the training loop
(checkpoints, exact resume, DDP, metrics, loss plot) through its ``plan`` hook: this plan builds the
model (the MLM run's weights when ``--init`` is given), feeds labelled snippets instead of windows
of the corpus, and validates with the held-out snippets' cross-entropy. From scratch it is the
default preset's encoder reading text with the tokenizer ``train --model encoder`` would use; with
``--init``, the MLM run's configuration, tokenizer and weights.

When the run is complete, ``report.json`` (accuracy, macro F1, the majority-class baseline, the
init run, the confusion matrix) and ``confusion.png`` are written in ``--out`` beside the run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from llmkernels.models import Encoder, EncoderConfig
from llmkernels.training import checkpoint, classify_data, data, loop
from llmkernels.training.config import TrainConfig, TrainingError

# Over the preset's training defaults: a shorter, gentler schedule than pre-training's.
DEFAULTS = {"steps": 200, "lr": 1e-3, "eval_every": 100}
# What an --init run fixes: its model and the way it reads text.
FROM_INIT = ("preset", "data", "tokenizer", "vocab_size", "seq_len", "model")


@dataclasses.dataclass
class Init:
    run_dir: str
    train: TrainConfig
    state: dict  # the pre-trained encoder's weights


def load_init(run_dir: str, ops: str = "llmkernels") -> Init:
    """The MLM run to start from, checked (one line for each way it can be unusable)."""
    if not Path(run_dir).is_dir():
        raise TrainingError(f"--init {run_dir!r} does not exist")
    try:
        saved = loop.read_run_config(run_dir)
    except TrainingError as e:
        raise TrainingError(f"--init: {e}") from None
    train = saved.get("train") if isinstance(saved, dict) else None
    if not isinstance(train, dict):
        raise TrainingError(f"--init {run_dir!r} is not a training run (its config.json has no training config)")
    if train.get("architecture", "gpt") != "encoder":
        raise TrainingError(f"--init {run_dir!r} is a GPT run: fine-tune from an encoder's MLM run "
                            "(llmkernels train --model encoder)")
    if train.get("objective") != "mlm":
        raise TrainingError(f"--init {run_dir!r} is a {train.get('objective')} run, not MLM pre-training")
    try:
        config = TrainConfig.from_dict(train)
        model_config = EncoderConfig.from_dict({**saved["model"], "ops": ops})
        if model_config.num_labels:
            raise ValueError("it already has a classification head")
    except (KeyError, TypeError, ValueError, TrainingError) as e:
        raise TrainingError(f"--init {run_dir!r}: its model does not fit the encoder: {e}") from None
    if checkpoint.folder(run_dir) is None:
        raise TrainingError(f"--init {run_dir!r} holds no checkpoint (the run stopped before its first)")
    model = Encoder(model_config)
    try:
        checkpoint.load(run_dir, model)
    except TrainingError as e:
        raise TrainingError(f"--init {run_dir!r}: its weights do not fit the encoder: {e}") from None
    return Init(run_dir, config, model.state_dict())


def classify_config(given: dict, init: Init | None, num_labels: int, pooling: str | None = None) -> TrainConfig:
    """The fine-tuning run's config: the encoder's default preset (from scratch) or the --init run's
    model and tokenizer, with DEFAULTS and the given flags."""
    from llmkernels.training import config as configs

    for name in ("architecture", "objective"):
        if given.get(name) not in (None, "encoder", "classify"):
            raise TrainingError("finetune-classify trains an encoder classifier: drop --model/--objective")
    flags = {k: v for k, v in given.items() if k not in ("architecture", "objective") and v is not None}
    head = {"num_labels": num_labels, **({"pooling": pooling} if pooling else {})}
    if init is None:
        preset = flags.pop("preset", None) or "tiny"
        model = {**flags.pop("model", {}), **head}
        return configs.build(preset, **{**DEFAULTS, **flags}, model=model, architecture="encoder", objective="classify")
    t = init.train
    for name in FROM_INIT:
        value = flags.pop(name, None)
        if name == "model" and value:  # --d-model, --n-layer, ...: the run's model is the one to fine-tune
            raise TrainingError(f"--{next(iter(value)).replace('_', '-')} comes from the --init run; drop it")
        if value is not None and value != getattr(t, name) and not (name == "data" and os.path.abspath(value) == t.data):
            raise TrainingError(f"--{name.replace('_', '-')} comes from the --init run ({getattr(t, name)!r}); drop it")
    return configs.build(t.preset, **{**DEFAULTS, **flags}, data=t.data, tokenizer=t.tokenizer, vocab_size=t.vocab_size,
                         seq_len=t.seq_len, val_fraction=t.val_fraction, model={**t.model, **head},
                         architecture="encoder", objective="classify")


def encode(tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """Each text as a start token (end-of-text, as after a document in pre-training) and its tokens, cut to seq_len."""
    return [([tokenizer.eot_id] + ids)[:seq_len] for ids in tokenizer.encode_batch(texts)]


def pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) of the rows padded on the right to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = True
    return ids, mask


class LabelledBatches:
    """Random labelled snippets drawn from (seed, step) alone, sliced per micro-batch and rank as
    ``data.Batches`` slices windows: ``get(step, micro)`` -> (ids, labels, attention_mask)."""

    def __init__(self, rows: list[list[int]], labels: list[int], windows: data.Batches, pad_id: int):
        self.rows, self.labels, self.w, self.pad_id = rows, torch.tensor(labels), windows, pad_id

    def get(self, step: int, micro: int):
        w = self.w
        g = torch.Generator().manual_seed(w.seed * 1_000_003 + step)
        picks = torch.randint(0, len(self.rows), (w.grad_accum, w.world, w.batch), generator=g)[micro, w.rank]
        ids, mask = pad([self.rows[i] for i in picks.tolist()], self.pad_id)
        return ids, self.labels[picks], mask


PREDICT_BATCH = 64  # rows per forward when only predicting: few calls (a small one costs a time slice on a busy CPU)


@torch.no_grad()
def predict(model: Encoder, rows: list[list[int]], pad_id: int, autocast=None, batch: int = PREDICT_BATCH
            ) -> tuple[torch.Tensor, list]:
    """(logits of every row (float32, on the CPU), predicted labels)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(rows), batch):
        ids, mask = pad(rows[i:i + batch], pad_id)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            out.append(model(ids.to(device), attention_mask=mask.to(device)).float().cpu())
    model.train(was_training)
    logits = torch.cat(out)
    return logits, logits.argmax(dim=-1).tolist()


@dataclasses.dataclass
class ClassifyPlan:
    """What loop.train needs to fine-tune the classifier (see ``loop.train``'s ``plan``)."""

    dataset: classify_data.Dataset
    init: Init | None
    tokenizer: object
    seq_len: int

    def __post_init__(self):
        self.train_rows = encode(self.tokenizer, self.dataset.train.texts, self.seq_len)
        self.test_rows = encode(self.tokenizer, self.dataset.test.texts, self.seq_len)

    def payload(self) -> dict:
        return {"classify": {"init": os.path.abspath(self.init.run_dir) if self.init else None,
                             "labels": list(self.dataset.label_names)}}

    def model(self, model_config: EncoderConfig) -> Encoder:
        model = Encoder(model_config)
        if self.init is not None:
            state = {k: v for k, v in self.init.state.items() if k != "mlm_bias"}  # the MLM head's, not ours
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
                raise TrainingError(f"--init weights do not fit: missing {missing}, unexpected {unexpected}")
        return model

    def batches(self, windows: data.Batches) -> LabelledBatches:
        return LabelledBatches(self.train_rows, self.dataset.train.labels, windows, self.tokenizer.eot_id)

    def evaluate(self, model, _windows, _batch: int, autocast, _dist) -> float:
        """The held-out snippets' mean cross-entropy (every rank scores all of them: they are few)."""
        logits, _ = predict(model, self.test_rows, self.tokenizer.eot_id, autocast)
        return torch.nn.functional.cross_entropy(logits, torch.tensor(self.dataset.test.labels)).item()


def finetune(init: str | None, given: dict, out: str, resume: bool = False, stop_at: int | None = None,
             quiet: bool = False, pooling: str | None = None) -> dict:
    """Fine-tunes the classifier in ``out``; returns the report (or, stopped early, the loop's summary)."""
    from llmkernels.training import classify_report

    if not out:
        raise TrainingError("llmkernels finetune-classify needs --out DIR")
    if resume:
        saved = loop.read_run_config(out)
        if not isinstance(saved.get("plan"), dict) or "classify" not in saved["plan"]:
            raise TrainingError(f"{out!r} is not a finetune-classify run: --resume continues one")
        recorded = saved["plan"]["classify"].get("init")
        if init is None:
            init = recorded  # the run remembers where it started
    source = load_init(init, given.get("ops") or "llmkernels") if init is not None else None
    if resume:
        config = loop.resolve_config(given, out, resume=True)
    else:
        config = classify_config(given, source, len(classify_data.PACKAGES), pooling)
    dataset = classify_data.load()  # after every check: reading the sources takes seconds
    corpus = data.load_corpus(config.data, config.tokenizer, config.vocab_size, config.val_fraction,
                              mask_token=config.mask_token)
    plan = ClassifyPlan(dataset, source, corpus.tokenizer, config.context)
    result = loop.train(config, out=out, resume=resume, stop_at=stop_at, quiet=quiet, plan=plan)
    if int(os.environ.get("RANK", "0")) != 0 or result["step"] < config.steps:
        return result
    return classify_report.write(out, plan, config)
