"""`llmkernels translate-train`: a ``Seq2Seq`` trained on parallel text by the training loop.

``TranslatePlan`` is a ``loop.train`` plan (see its docstring): it supplies the data
(``translate_data``), the encoder-decoder and its validation (teacher-forced loss, greedy samples),
so checkpoints, exact resume, metrics.jsonl, the loss plot and the progress bar are the GPT's own.
After the last step ``translate_report`` decodes the test side greedily and with beam search and
writes report.json. ``--init RUN_DIR`` starts from another translation run's weights and
tokenizers (pre-training on one pair, fine-tuning on another); with ``--compare-scratch`` the same
model, tokenizers, data, seed and steps are trained once more from a random initialisation in
OUT/scratch (a finished one is reused), and the report says whether the fine-tuned model beat it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from llmkernels.models import SEQ2SEQ_PRESETS, Seq2Seq, Seq2SeqConfig
from llmkernels.models.seq2seq_decode import greedy
from llmkernels.training import checkpoint, loop, translate_data
from llmkernels.training.config import TrainingError
from llmkernels.training.translate_config import TRAIN_DEFAULTS, TranslateOptions  # noqa: F401  (re-exported)

SAMPLES = 2  # validation sentences translated at each evaluation
SCRATCH = "scratch"  # the run dir, inside OUT, of --compare-scratch's model trained from scratch


def read_translation_run(run_dir: str) -> dict:
    """A run's config.json, refused in one line unless a translation run wrote it."""
    saved = loop.read_run_config(run_dir)
    plan = saved.get("plan") if isinstance(saved, dict) else None
    if not isinstance(plan, dict) or "translate" not in plan or "model" not in saved:
        kind = "a distillation run" if isinstance(plan, dict) and "distill" in plan else "a GPT run"
        raise TrainingError(f"{run_dir!r} is not a translation run ({kind}; its model is not an encoder-decoder)")
    return saved


def load_model(run_dir: str, ops: str | None = None) -> tuple[Seq2Seq, dict]:
    """The trained model of a translation run (eval mode) and its config.json."""
    saved = read_translation_run(run_dir)
    try:
        config = Seq2SeqConfig.from_dict(saved["model"])
    except (TypeError, ValueError) as e:
        raise TrainingError(f"{run_dir!r} holds an unusable model config: {e}") from None
    if ops is not None:
        config.ops = ops
    model = Seq2Seq(config)
    checkpoint.load(run_dir, model)
    return model.eval(), saved


class _Validation:
    def __init__(self, corpus: translate_data.TranslationData, config, dist):
        src, tgt = corpus.val
        count = min(len(src), config.eval_batches * config.batch_size)
        self.src, self.tgt = src[dist.rank:count:dist.world], tgt[dist.rank:count:dist.world]
        self.corpus, self.batch, self.dist = corpus, config.batch_size, dist

    @torch.no_grad()
    def loss(self, model, autocast) -> float:
        eot, device = self.corpus.tokenizer.eot_id, next(model.parameters()).device
        total = count = 0.0
        for i in range(0, len(self.src), self.batch):
            tensors = [t.to(device) for t in translate_data.batch_tensors(self.src[i:i + self.batch],
                                                                          self.tgt[i:i + self.batch], eot)]
            tokens = float((tensors[3] != -100).sum())
            with autocast():
                total += model(*tensors).double().item() * tokens
            count += tokens
        return self.dist.mean(total / count) if self.dist.world > 1 else total / count

    @torch.no_grad()
    def sample(self, model, step: int) -> str:
        model.eval()
        device = next(model.parameters()).device
        src, mask, _, _ = translate_data.batch_tensors(self.src[:SAMPLES], self.tgt[:SAMPLES], self.corpus.tokenizer.eot_id)
        hyps = greedy(model, src.to(device), mask.to(device))
        model.train()
        pairs = self.corpus.texts["val"][:SAMPLES]
        return " | ".join(f"{s} -> {self.corpus.tgt_tokenizer.decode(h)}" for (s, _), h in zip(pairs, hyps))


@dataclasses.dataclass
class TranslatePlan:
    """The ``loop.train`` plan of a translation run."""

    options: TranslateOptions
    model_overrides: dict = dataclasses.field(default_factory=dict)
    scratch: bool = False  # init's model shape and tokenizers, but not its weights (--compare-scratch)

    def payload(self) -> dict:
        payload = {"translate": {**dataclasses.asdict(self.options), "model": self.model_overrides}}
        if self.scratch:
            payload["translate"]["scratch"] = True
        return payload

    def corpus(self, config, build: bool) -> translate_data.TranslationData:
        o = self.options
        return translate_data.load(o.pair, o.data, o.vocab_size, o.shared_vocab, o.train_pool, o.init, build=build)

    def model_config(self, config, corpus: translate_data.TranslationData) -> Seq2SeqConfig:
        # Room past the longest sentence seen, for inputs longer than any in the data.
        margin = lambda n: (n + 16 + 7) // 8 * 8  # noqa: E731
        lengths = {"max_src_len": margin(corpus.max_len(0)), "max_tgt_len": margin(corpus.max_len(1) + 1)}
        if self.options.init is not None:  # the pre-trained model's shape, sizes and vocabularies
            values = read_translation_run(self.options.init)["model"]
            # Its lengths grow to this data's (another language through init's tokenizer takes more
            # tokens): positions are computed (sinusoidal, RoPE), no weights depend on them.
            lengths = {name: max(values[name], n) for name, n in lengths.items()}
            return Seq2SeqConfig.from_dict({**values, **lengths, "ops": config.ops})
        eot = corpus.tokenizer.eot_id
        values = {**SEQ2SEQ_PRESETS[self.options.preset], **self.model_overrides,
                  "src_vocab_size": corpus.src_tokenizer.vocab_size, "tgt_vocab_size": corpus.tgt_tokenizer.vocab_size,
                  "shared_vocab": corpus.shared, **lengths, "bos_id": eot, "eos_id": eot, "ops": config.ops}
        try:
            return Seq2SeqConfig(**values)
        except (TypeError, ValueError) as e:
            raise TrainingError(f"bad model settings: {e}") from None

    def model(self, model_config: Seq2SeqConfig) -> Seq2Seq:
        model = Seq2Seq(model_config)
        if self.options.init is not None and not self.scratch:
            checkpoint.load(self.options.init, model)
        return model

    def batches(self, batches):
        corpus = self.corpus(None, build=False)
        return translate_data.PairBatches(corpus.train, corpus.tokenizer.eot_id, batches.batch, batches.grad_accum,
                                          batches.seed, batches.world, batches.rank)

    def validation(self, corpus, config, dist) -> _Validation:
        return _Validation(corpus, config, dist)


def train_config(given: dict, out: str | None, resume: bool):
    """The loop's TrainConfig: translate-train's defaults with the given flags (or the saved run's)."""
    flags = {k: v for k, v in given.items() if v is not None}
    if resume:
        return loop.resolve_config(flags, out, True)
    from llmkernels.training import config as configs

    return configs.build("tiny", **{**TRAIN_DEFAULTS, **flags})


def translate_train(options: TranslateOptions, given: dict, out: str | None, resume: bool = False,
                    stop_at: int | None = None, quiet: bool = False, model_overrides: dict | None = None) -> dict:
    """Trains in ``out`` and, after the last step, writes report.json; returns the loop's summary (and the report)."""
    from llmkernels.training import translate_report

    if not out:
        raise TrainingError("llmkernels translate-train needs --out DIR")
    options.validate()
    config = train_config(given, out, resume)
    if resume:
        saved = read_translation_run(out)["plan"]["translate"]
        options = TranslateOptions(**{k: v for k, v in saved.items() if k not in ("model", "scratch")})
        model_overrides = saved.get("model") or {}
    plan = TranslatePlan(options, model_overrides or {})
    result = loop.train(config, out=out, resume=resume, stop_at=stop_at, quiet=quiet, plan=plan)
    finished = result["step"] >= config.steps
    if options.compare_scratch:
        scratch = _train_scratch(config, os.path.join(out, SCRATCH), plan, resume, stop_at, quiet)
        finished = finished and scratch["step"] >= config.steps
    if int(os.environ.get("RANK", "0")) == 0 and finished:
        result["report"] = translate_report.write(out, options, quiet=quiet)
    return result


def _train_scratch(config, run_dir: str, plan: TranslatePlan, resume: bool, stop_at: int | None, quiet: bool) -> dict:
    """The scratch model of --compare-scratch: trained (or resumed) in ``run_dir``, or reused as it is
    when that run already finished with the same settings (a rerun after the fine-tuned one failed)."""
    scratch = dataclasses.replace(plan, scratch=True)
    try:
        saved, step = loop.read_run_config(run_dir), checkpoint.read_state(run_dir)["step"]
    except TrainingError:
        saved, step = {}, None
    if saved.get("plan") == scratch.payload() and saved.get("train") == config.to_dict() and step == config.steps:
        return {"run_dir": run_dir, "step": step}
    again = resume and checkpoint.folder(run_dir) is not None
    return loop.train(config, out=run_dir, resume=again, stop_at=stop_at, quiet=quiet, plan=scratch)


def report_path(out: str) -> str:
    return str(Path(out) / "report.json")
