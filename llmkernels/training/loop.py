"""The training loop: AdamW, warmup + cosine, clipping, accumulation, bf16 autocast, DDP or FSDP2, exact resume.

Rank 0 prepares the data and the run dir and writes everything; the other ranks read the cache it
built. The data a step sees depends on (seed, step) alone and every piece of state lives in the
checkpoint, so ``--stop-at K`` then ``--resume`` reproduces the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

import llmkernels
from llmkernels import bf16_support, models
from llmkernels.models import GPT
from llmkernels.training import checkpoint, data, mlm, report, sharded_checkpoint
from llmkernels.training import validation as validation_mod
from llmkernels.training.validation import evaluate
from llmkernels.training.config import TrainConfig, TrainingError, merge_for_resume

CHECKSUM_ENV = "LLMKERNELS_TRAIN_CHECKSUM_DIR"  # tests: each rank writes its final loss and weight hash here


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warmup to ``lr`` over the warmup steps, then cosine down to ``lr * min_lr_ratio`` at ``steps``."""
    warmup = config.warmup
    if step <= warmup:
        return config.lr * step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, config.steps - warmup))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def read_run_config(run_dir: str) -> dict:
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise TrainingError(f"run dir {run_dir!r} does not exist, so it holds no run")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainingError(f"{run_dir!r} holds no run (config.json missing)") from None
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot read {path}: {e}") from None


def resolve_config(given: dict, out: str | None, resume: bool) -> TrainConfig:
    """The run's config: the preset with the given flags, or, on resume, the saved one they must agree with."""
    from llmkernels.training import config as configs

    if not resume:
        return configs.build(given.get("preset") or "tiny", **{k: v for k, v in given.items() if k != "preset"})
    if out is None:
        raise TrainingError("--resume needs --out DIR, the run to continue")
    saved = read_run_config(out)
    try:
        saved_config = TrainConfig.from_dict(saved["train"])
    except (KeyError, TypeError) as e:
        raise TrainingError(f"{out}/config.json is not a training config: {e}") from None
    return merge_for_resume(saved_config, given)


class _Dist:
    def __init__(self, device_kind: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            if device_kind == "cuda":
                torch.cuda.set_device(self.local_rank)
            torch.distributed.init_process_group("nccl" if device_kind == "cuda" else "gloo")

    def broadcast(self, value):
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.item() / self.world

    def close(self, finished: bool = False):
        if self.world > 1 and torch.distributed.is_initialized():
            if finished:
                # Every rank leaves together: one that tore gloo down while its peer was still at
                # work aborted now and then ("terminate called without an active exception").
                # Not after an error, where the peer may never arrive.
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device == "cuda" or config.device == "auto" and torch.cuda.is_available():
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda asked for, but no CUDA device is present")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _check_backend(config: TrainConfig, device: torch.device) -> None:
    """The backend the ops would run on (--backend, else LLMKERNELS_BACKEND) must be present: one
    line before any work, not an error from the first op call."""
    if config.ops != "llmkernels":
        return
    try:
        requested = config.backend if config.backend != "auto" else llmkernels.backends.requested_backend()
    except ValueError as e:
        raise TrainingError(str(e)) from None
    why = llmkernels.backends.absent_reason(requested, device.type)
    if why is not None:
        origin = "--backend" if config.backend != "auto" else llmkernels.backends.requested_origin()
        present = llmkernels.available_backends(device.type)
        raise TrainingError(
            f"backend {requested!r} (from {origin}) cannot run here: {why}; present on {device.type}: {', '.join(present)}"
        )


def _corpus(config: TrainConfig, plan, build: bool):
    """The plan's data (``plan.corpus``) or the GPT's tokenised corpus."""
    if hasattr(plan, "corpus"):
        return plan.corpus(config, build)
    corpus = data.load_corpus(config.data, config.tokenizer, config.vocab_size, config.val_fraction, build=build,
                              mask_token=config.mask_token)
    if build:
        data.check_sizes(corpus, config.context)
    return corpus


def _model_config(config: TrainConfig, plan, corpus):
    return plan.model_config(config, corpus) if hasattr(plan, "model_config") else config.model_config(corpus.vocab_size)


def _prepare_on_rank0(config: TrainConfig, out: str | None, resume: bool, plan) -> tuple[str, str]:
    """Builds the corpus cache and checks/creates the run dir; returns (run_dir, corpus key)."""
    payload = None if plan is None else plan.payload()
    corpus = _corpus(config, plan, build=True)
    run_dir = out or os.path.join("runs", f"{config.preset}-{datetime.now():%Y%m%d-%H%M%S}")
    if resume:
        saved = read_run_config(run_dir)
        if saved.get("corpus_key") != corpus.key:
            raise TrainingError(f"cannot resume: the data or tokenizer differs from the run's ({saved.get('corpus_key')})")
        if saved.get("world_size") != int(os.environ.get("WORLD_SIZE", "1")):
            raise TrainingError(f"cannot resume: the run used {saved.get('world_size')} processes")
        if saved.get("plan") != payload:
            raise TrainingError(f"cannot resume: the run was made with {saved.get('plan')}, not {payload}")
        if checkpoint.folder(run_dir) is not None:
            checkpoint.read_state(run_dir)  # refuses a damaged checkpoint before anything is written
        # No checkpoint: the run stopped before its first one, and resumes from step 0.
    else:
        if checkpoint.folder(run_dir):
            raise TrainingError(f"{run_dir!r} already holds a run; pass --resume to continue it or choose another --out")
        # A config without a checkpoint is a run that stopped before saving anything: start it again.
        for leftover in (report.METRICS, "loss.png"):
            Path(run_dir, leftover).unlink(missing_ok=True)
        os.makedirs(run_dir, exist_ok=True)
        for name, path in getattr(corpus, "run_files", {"tokenizer.json": corpus.tokenizer_path}).items():
            shutil.copyfile(path, os.path.join(run_dir, name))
        model_config = _model_config(config, plan, corpus)
        saved_payload = {"train": config.to_dict(), "model": model_config.to_dict(), "corpus_key": corpus.key,
                         "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        if plan is not None:
            saved_payload["plan"] = payload
        checkpoint.write_json(Path(run_dir, "config.json"), saved_payload)
    return run_dir, corpus.key


def _optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (CPU and CUDA) updates every parameter in one pass over its four tensors; the
    # per-parameter loop it replaces took ~10 elementwise passes a tensor. FSDP's sharded
    # parameters keep torch's default implementation.
    fused = device.type in ("cpu", "cuda") and not config.fsdp
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused or None)


def _weights_sha(state_dict: dict) -> str:
    h = hashlib.sha256()
    for name, p in sorted(state_dict.items()):
        h.update(name.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(config: TrainConfig, out: str | None = None, resume: bool = False, stop_at: int | None = None,
          quiet: bool = False, plan=None) -> dict:
    """Trains to ``config.steps`` (or stops after ``stop_at``) and returns a summary dict.

    ``plan`` (optional) changes what is trained, not how: ``plan.model(model_config)`` builds the
    model (a GPT whose forward takes a batch's tensors and returns the loss),
    ``plan.batches(batches)`` wraps the data (``get(step, micro)`` -> the forward's tensors), and
    ``plan.payload()`` is recorded in config.json (``"plan"``), which a resume must match; an
    optional ``plan.evaluate`` replaces ``evaluate`` (same arguments, returns the validation loss).
    (``llmkernels.training.distill`` and ``llmkernels.training.classify`` are such plans.) A plan
    that trains another kind of model on other data also has ``corpus(config, build)`` (its data:
    ``key``, ``tokenizer_path`` or ``run_files``, ``tokenizer``, ``vocab_size``, ``train``),
    ``model_config(config, corpus)`` and ``validation(corpus, config, dist)`` (``loss(model,
    autocast)`` and ``sample(model, step)``); ``llmkernels.training.translate`` is one."""
    config.validate()
    if stop_at is not None and stop_at <= 0:
        raise TrainingError(f"--stop-at must be a positive integer; got {stop_at}")
    device = _device(config, int(os.environ.get("LOCAL_RANK", "0")))
    _check_backend(config, device)
    dist = _Dist(device.type)
    finished = False
    try:
        if config.fsdp and dist.world == 1:
            raise TrainingError("--fsdp shards the model across processes: start it with torchrun --nproc_per_node N, N >= 2")
        context = llmkernels.use_backend(config.backend) if config.backend != "auto" else contextlib.nullcontext()
        with context:
            result = _train(config, out, resume, stop_at, quiet, device, dist, plan)
        finished = True
        return result
    finally:
        dist.close(finished)


def _gradient_sync(trained, fsdp: bool, sync: bool):
    """Gradient accumulation: only the last micro-batch reduces gradients across processes."""
    if fsdp:
        trained.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    return contextlib.nullcontext() if sync else trained.no_sync()


@contextlib.contextmanager
def _whole(model, fsdp: bool):
    """The root module's parameters gathered for calls that bypass its forward (generate)."""
    if not fsdp:
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def _train(config, out, resume, stop_at, quiet, device, dist, plan) -> dict:
    outcome = None
    if dist.rank == 0:
        try:
            outcome = _prepare_on_rank0(config, out, resume, plan)
        except TrainingError as e:
            outcome = str(e)
    outcome = dist.broadcast(outcome)
    if isinstance(outcome, str):
        raise TrainingError(outcome)
    run_dir, _ = outcome
    corpus = _corpus(config, plan, build=False)
    own_model = hasattr(plan, "model_config")  # a plan with its own kind of model builds its config
    model_config = config.model_config_class.from_dict(read_run_config(run_dir)["model"]) \
        if dist.rank and not own_model else None
    if model_config is None:
        model_config = _model_config(config, plan, corpus)
    model_config.ops = config.ops

    torch.manual_seed(config.seed)
    model = (models.build(model_config) if plan is None else plan.model(model_config)).to(device)
    model.checkpoint_activations = config.checkpoint_activations
    if config.objective == "mlm":  # before any sharding; a resumed run loads its own below
        mlm.init_output_bias(model, corpus.train, model_config.vocab_size)
    if config.fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # one all-gather per block, freed after its forward and backward
            fully_shard(block)
        fully_shard(model)  # the embedding, final norm and (tied) output projection
    optimizer = _optimizer(model, config, device)
    saver = sharded_checkpoint if config.fsdp else checkpoint
    start = 0
    if resume:
        if checkpoint.folder(run_dir) is not None:
            start = saver.load(run_dir, model, optimizer)["step"]
        if dist.rank == 0:
            report.truncate_metrics(run_dir, start)
    trained = model
    if dist.world > 1 and not config.fsdp:
        trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)  # noqa: E731
    if config.bf16:
        bf16_support.warn_if_cpu_bf16_matmul_is_emulated(device.type, "bf16 autocast")

    seq = config.context
    batches = data.Batches(corpus.train, seq, config.batch_size, config.grad_accum, config.seed, dist.world, dist.rank)
    val = None  # a plan with its own validation brings its own held-out data
    if not hasattr(plan, "validation"):
        val = data.val_windows(corpus.val, seq, config.eval_batches * config.batch_size * dist.world)  # global batches
    if config.objective == "mlm":
        batches, val = mlm.MaskedBatches(batches, corpus.tokenizer, config.seed), mlm.validation(val, corpus.tokenizer)
    if plan is not None:
        batches = plan.batches(batches)
    if hasattr(plan, "validation"):
        validation = plan.validation(corpus, config, dist)
    else:  # a plan may score its own way (a classifier: its held-out loss); only a GPT samples text
        validation = validation_mod.GPTValidation(corpus, config, dist, val, getattr(plan, "evaluate", evaluate))
    samples = hasattr(plan, "validation") or hasattr(model, "generate")
    tokens_per_step = getattr(batches, "tokens_per_step", seq * config.batch_size * config.grad_accum * dist.world)
    last = min(config.steps, stop_at) if stop_at else config.steps
    save_every = config.save_every or config.eval_every
    lead = dist.rank == 0

    progress = None
    if lead and not quiet:
        from tqdm import tqdm

        progress = tqdm(total=config.steps, initial=start, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)
        progress.write(f"model: {model.num_parameters():,} parameters, ops={config.ops}, {dist.world} process(es); run dir {run_dir}")

    loss_value, val_loss, sample = float("nan"), None, None
    window_tokens, window_time = 0, 0.0
    model.train()
    for step in range(start + 1, last + 1):
        began = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, step)
        total = 0.0
        for micro in range(config.grad_accum):
            batch = [t.to(device) for t in batches.get(step, micro)]
            sync = micro == config.grad_accum - 1 or dist.world == 1
            with _gradient_sync(trained, config.fsdp, sync), autocast():
                loss = trained(*batch) / config.grad_accum
            loss.backward()
            total += loss.item()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = dist.mean(total)
        window_time += time.perf_counter() - began
        window_tokens += tokens_per_step
        if not math.isfinite(loss_value):
            raise TrainingError(f"the loss became {loss_value} at step {step}; lower --lr or use fp32")

        evaluate_now = step % config.eval_every == 0 or step == config.steps
        row = None
        if step % config.log_every == 0 or evaluate_now or step == last:
            row = {"step": step, "train_loss": loss_value, "lr": lr_at(config, step),
                   "tokens_per_s": window_tokens / window_time}
            window_tokens, window_time = 0, 0.0
        if evaluate_now:
            model.eval()
            val_loss = validation.loss(model, autocast)
            model.train()
            row.update(val_loss=val_loss, val_perplexity=math.exp(val_loss))
            if samples and (lead or config.fsdp):  # under FSDP every rank takes part in the sampling's all-gathers
                with autocast(), _whole(model, config.fsdp):
                    sample = validation.sample(model, step)
        if lead and row is not None:
            report.append_metrics(run_dir, row)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_step / (time.perf_counter() - began):,.0f}")
            if evaluate_now:
                shown = f"; sample: {sample[:160]!r}" if sample is not None else ""
                progress.write(f"step {step}: val loss {val_loss:.4f}, perplexity {math.exp(val_loss):.2f}{shown}")
        if (lead or config.fsdp) and (step % save_every == 0 or step == last):
            saver.save(run_dir, model, optimizer, {"step": step, "train_loss": loss_value})
        if lead and step == last:
            report.plot_losses(run_dir)
    if progress is not None:
        progress.close()

    weights_sha = _weights_sha(sharded_checkpoint.full_state_dict(model) if config.fsdp else model.state_dict())
    if os.environ.get(CHECKSUM_ENV):
        Path(os.environ[CHECKSUM_ENV]).mkdir(parents=True, exist_ok=True)
        Path(os.environ[CHECKSUM_ENV], f"rank{dist.rank}.json").write_text(
            json.dumps({"rank": dist.rank, "step": last, "train_loss": loss_value, "weights_sha256": weights_sha}))
    return {"run_dir": run_dir, "step": last, "train_loss": loss_value, "val_loss": val_loss,
            "sample": sample, "weights_sha256": weights_sha, "parameters": model.num_parameters()}
