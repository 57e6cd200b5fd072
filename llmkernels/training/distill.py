"""Distil a trained GPT (the teacher's run directory) into a smaller one, and show what it bought.

``distill(options, given, out)`` trains, in ``out``:

* ``student-kd/``: the student on the training loop (checkpoints, exact resume, DDP, metrics and
  loss plot as any run) with ``linear_distillation_loss`` against the frozen teacher, whose forward
  runs each step (online), or with ``linear_topk_distillation_loss`` against the teacher's top-K
  log-probabilities cached by one pass beforehand (``offline_topk``, ``topk_cache.py``);
* ``student-scratch/``: the same student, data and steps on the plain next-token loss (an existing
  finished one is reused);
* ``report.json`` / ``report.png``: the validation perplexity, parameters and inference tokens/s of
  the teacher and both students, with the options used.

Defaults (``DEFAULTS``, from ``config.DISTILL_DEFAULTS``): temperature 1, forward KL (beta 0), hard
weight 0.5: the soft targets carry the teacher's knowledge, the hard part keeps the student on the
data (a temperature of 2 made the 60-step test student worse than scratch). The student shares the
teacher's data and tokenizer; its preset defaults to the one below the teacher's.

What the offline cache holds (``topk_cache.py``, ``sparse_teacher.py``): per token, K ids and
log-probabilities that estimate the teacher without bias: its K/2 most likely tokens exactly, then
a systematic sample of the rest weighted by the rest's mass (``--offline-exact N`` sets how many are
exact; N = K stores the plain top K). The plain top K lost the rest: the
300-step tiny teacher's top 32 hold only ~60% of its mass on average (10th percentile ~21%), and
lumped into one tail bucket the rest taught the student nothing but its own tail's shape (offline
perplexity 13.8%, 2.8% and 9.0% above the online student's on seeds 0, 1, 2 of
benchmarks/distill_quality.py); with the sample the forward-KL gradient is the online one in
expectation (offline 304.63, 312.78, 297.98 against online 306.70, 321.73, 335.52).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch

from llmkernels.models import GPT, GPTConfig, PRESETS
from llmkernels.nn import LinearDistillationLoss, LinearTopKDistillationLoss
from llmkernels.training import checkpoint, data, loop, topk_cache
from llmkernels.training.config import DISTILL_DEFAULTS, TrainConfig, TrainingError

DEFAULTS = DISTILL_DEFAULTS
KD, SCRATCH = "student-kd", "student-scratch"


@dataclasses.dataclass
class DistillOptions:
    teacher: str
    temperature: float = DEFAULTS["temperature"]
    beta: float = DEFAULTS["beta"]
    hard_weight: float = DEFAULTS["hard_weight"]
    offline_topk: int | None = None
    init_from_teacher: bool = False
    # How many of the K cached slots hold the teacher's most likely tokens exactly (None: K/2, the
    # default sparse estimate; K: the plain top K, biased, for comparison).
    offline_exact: int | None = None

    def validate(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise TrainingError(f"--temperature must be a finite number > 0; got {self.temperature!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise TrainingError(f"--beta must lie in [0, 1]; got {self.beta!r}")
        if not 0.0 <= self.hard_weight <= 1.0:
            raise TrainingError(f"--hard-weight must lie in [0, 1]; got {self.hard_weight!r}")
        if self.offline_topk is not None and (isinstance(self.offline_topk, bool) or not isinstance(self.offline_topk, int)
                                              or self.offline_topk < 1):
            raise TrainingError(f"--offline-topk must be a positive integer; got {self.offline_topk!r}")
        if self.offline_topk is not None and self.beta != 0.0:
            raise TrainingError("--offline-topk distils the forward KL from the cached teacher: --beta must be 0")
        if self.offline_exact is not None:
            if self.offline_topk is None:
                raise TrainingError("--offline-exact needs --offline-topk K (it says how many of the K slots are exact)")
            if isinstance(self.offline_exact, bool) or not isinstance(self.offline_exact, int) \
                    or not 0 <= self.offline_exact <= self.offline_topk:
                raise TrainingError(f"--offline-exact must be an integer in [0, K={self.offline_topk}]; "
                                    f"got {self.offline_exact!r}")


@dataclasses.dataclass
class Teacher:
    run_dir: str
    saved: dict  # the run's config.json
    model: GPT
    identity: str  # what a top-K cache records: the run's config and checkpoint hashes

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.saved["train"])


def load_teacher(run_dir: str) -> Teacher:
    """The teacher frozen (eval mode, no gradients), with one clear line for anything unusable."""
    saved = loop.read_run_config(run_dir)
    if isinstance(saved.get("train"), dict) and saved["train"].get("architecture", "gpt") != "gpt":
        raise TrainingError(f"teacher {run_dir!r} is an encoder run; distil from a GPT run")
    try:
        model_config = GPTConfig.from_dict(saved["model"])
        TrainConfig.from_dict(saved["train"])
    except (KeyError, TypeError, ValueError) as e:
        raise TrainingError(f"teacher {run_dir!r} is not a training run: {e}") from None
    if saved.get("plan") is not None:
        raise TrainingError(f"teacher {run_dir!r} is itself a distillation run; distil from a pre-trained run")
    model = GPT(model_config)
    state = checkpoint.load(run_dir, model)
    model.eval().requires_grad_(False)
    digest = hashlib.sha256(json.dumps([saved["model"], saved["corpus_key"], state["sha256"]], sort_keys=True).encode())
    return Teacher(run_dir, saved, model, digest.hexdigest()[:16])


def student_preset(teacher_preset: str) -> str:
    """The preset one size below the teacher's (the smallest stays the smallest)."""
    names = list(PRESETS)
    return names[max(0, names.index(teacher_preset) - 1)]


def student_config(teacher: Teacher, given: dict) -> TrainConfig:
    """The teacher's data and tokenizer (they must be shared) with the student's preset and flags."""
    from llmkernels.training import config as configs

    t = teacher.train_config
    if given.get("architecture") not in (None, "gpt") or given.get("objective") not in (None, "clm"):
        raise TrainingError("llmkernels distill trains GPT students (next-token): drop --model/--objective")
    for name in ("data", "tokenizer", "vocab_size", "seq_len"):
        value = given.get(name)
        if value is not None and value != getattr(t, name) and not (name == "data" and os.path.abspath(value) == t.data):
            raise TrainingError(f"--{name.replace('_', '-')} {value!r} differs from the teacher's {getattr(t, name)!r}: "
                                "the student must share the teacher's data and tokenizer")
    flags = {k: v for k, v in given.items() if k not in ("preset", "data", "tokenizer", "vocab_size", "seq_len")}
    preset = given.get("preset") or student_preset(t.preset)
    return configs.build(preset, data=t.data, tokenizer=t.tokenizer, vocab_size=t.vocab_size, seq_len=t.context, **flags)


class DistilledGPT(GPT):
    """The student: a GPT whose training loss is distilled from the frozen teacher. Its parameters
    and checkpoints are a plain GPT's (the teacher is held outside the module tree); evaluation and
    sampling are the GPT's own."""

    def attach(self, teacher: GPT, options: DistillOptions) -> "DistilledGPT":
        object.__setattr__(self, "teacher", teacher)  # not a submodule: no parameters, no state dict
        kwargs = dict(temperature=options.temperature, hard_weight=options.hard_weight, ops=self.ops)
        if options.offline_topk:
            self.distill_loss = LinearTopKDistillationLoss(**kwargs)
        else:
            self.distill_loss = LinearDistillationLoss(beta=options.beta, **kwargs)
        return self

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the teacher along
        if getattr(self, "teacher", None) is not None:
            self.teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, idx, targets=None, top_ids=None, top_logprobs=None):
        if targets is None or not self.training:
            return super().forward(idx, targets)
        hidden = self._hidden(idx).flatten(0, 1)
        if top_ids is not None:
            return self.distill_loss(hidden, self.lm_head.weight, top_ids.flatten(0, 1), top_logprobs.flatten(0, 1),
                                     targets.flatten())
        with torch.no_grad():
            teacher_hidden = self.teacher._hidden(idx).flatten(0, 1)
        return self.distill_loss(hidden, self.lm_head.weight, teacher_hidden, self.teacher.lm_head.weight, targets.flatten())


def init_from_every_other_layer(student: GPT, teacher: GPT) -> bool:
    """DistilBERT's initialisation: the student's block i from the teacher's block 2i, embeddings and
    final norm copied, when every shape agrees; returns whether it applied."""
    pairs = [("embed", "embed"), ("norm", "norm")] + [(f"blocks.{i}", f"blocks.{2 * i}") for i in range(len(student.blocks))]
    if len(student.blocks) * 2 > len(teacher.blocks) + 1:
        return False
    teacher_state, updates = teacher.state_dict(), {}
    for name, value in student.state_dict().items():
        source = next((t + name[len(s):] for s, t in pairs if name.startswith(s + ".")), None)
        if source is None:
            continue
        if source not in teacher_state or teacher_state[source].shape != value.shape:
            return False
        updates[name] = teacher_state[source]
    student.load_state_dict(updates, strict=False)
    return True


@dataclasses.dataclass
class DistillPlan:
    """What loop.train needs to train the distilled student (see ``loop.train``'s ``plan``)."""

    teacher: Teacher
    options: DistillOptions
    cache: topk_cache.TopKCache | None = None

    def payload(self) -> dict:
        return {"distill": {**dataclasses.asdict(self.options), "teacher": os.path.abspath(self.teacher.run_dir),
                            "teacher_identity": self.teacher.identity}}

    def model(self, model_config: GPTConfig) -> GPT:
        student = DistilledGPT(model_config)
        if self.options.init_from_teacher and not init_from_every_other_layer(student, self.teacher.model):
            raise TrainingError("--init-from-teacher: the student's shapes do not match every other teacher layer")
        return student.attach(self.teacher.model, self.options)

    def batches(self, batches):
        return batches if self.cache is None else self.cache.batches(batches)


def inference_tokens_per_s(model: GPT, windows: torch.Tensor, repeats: int = 3) -> float:
    """Forward passes over the validation windows (no loss, no gradient): tokens per second."""
    model.eval()
    x = windows[:, :-1]
    with torch.no_grad():
        model._hidden(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            began = time.perf_counter()
            model.lm_head(model._hidden(x))
            best = min(best, time.perf_counter() - began)
    return x.numel() / best


def _scratch_is_done(run_dir: str, config: TrainConfig) -> bool:
    """An earlier scratch run of the same config that reached its last step can be reused."""
    try:
        saved = loop.read_run_config(run_dir)
        state = checkpoint.read_state(run_dir)
    except TrainingError:
        return False
    return saved.get("train") == config.to_dict() and state.get("step") == config.steps


def prepare(options: DistillOptions, given: dict, out: str, quiet: bool = False):
    """Everything checked, then the top-K cache (offline) built or opened in ``out``: returns the
    student's config, the plan ``loop.train`` takes for the distilled student, and the corpus.
    (``benchmarks/bench_distill.py`` times the distilled student's steps through it.)"""
    options.validate()
    if not out:
        raise TrainingError("llmkernels distill needs --out DIR")
    teacher = load_teacher(options.teacher)
    config = student_config(teacher, given)
    corpus = data.load_corpus(config.data, config.tokenizer, config.vocab_size, config.val_fraction)
    if corpus.key != teacher.saved.get("corpus_key"):
        raise TrainingError("the teacher's data or tokenizer differs from what the student would read: distil on the "
                            "teacher's own data and tokenizer")
    vocab = teacher.model.lm_head.weight.shape[0]
    if options.offline_topk and options.offline_topk > vocab:
        raise TrainingError(f"--offline-topk {options.offline_topk} exceeds the teacher's vocabulary ({vocab} tokens)")
    os.makedirs(out, exist_ok=True)
    cache = None
    if options.offline_topk:
        cache = topk_cache.build_or_open(Path(out) / "topk-cache", teacher, config, corpus, options, quiet)
    return config, DistillPlan(teacher, options, cache), corpus


def distill(options: DistillOptions, given: dict, out: str, resume: bool = False, stop_at: int | None = None,
            quiet: bool = False) -> dict:
    """Trains the distilled and the scratch student in ``out`` and writes the report; returns it."""
    from llmkernels.training import distill_report

    config, plan, corpus = prepare(options, given, out, quiet)
    teacher = plan.teacher
    kd = loop.train(config, out=os.path.join(out, KD), resume=resume, stop_at=stop_at, quiet=quiet, plan=plan)
    scratch_dir = os.path.join(out, SCRATCH)
    if _scratch_is_done(scratch_dir, config):
        scratch = {"run_dir": scratch_dir, "step": config.steps}
    else:
        resume_scratch = resume and checkpoint.folder(scratch_dir) is not None
        scratch = loop.train(config, out=scratch_dir, resume=resume_scratch, stop_at=stop_at, quiet=quiet)
    if int(os.environ.get("RANK", "0")) != 0 or kd["step"] < config.steps:
        return {"kd": kd, "scratch": scratch}
    return distill_report.write(out, teacher, options, config, corpus)
