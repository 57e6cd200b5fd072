"""A K-token estimate of the teacher's distribution for every token a student run will read, computed once.

``distill --offline-topk K`` runs the teacher over the batches of steps 1..steps (the data a step
reads depends on (seed, step) alone) and stores ``ids`` (int32) and ``logprobs`` (float32), shaped
(steps, grad_accum, world, batch, seq, K), as memory-mapped ``.npy`` files; the student then trains
on ``linear_topk_distillation_loss`` without running the teacher. What a row holds
(``sparse_teacher.py``): the teacher's ``exact_slots(K)`` most likely tokens with their exact
log-probabilities, then a systematic sample of the rest weighted so that each token's stored
probability is an unbiased estimate of the teacher's (the plain top K lumps the rest into one tail
bucket, a biased gradient that cost the offline student 3-14% of perplexity against the online one).
The sample's uniforms are seeded by the run's seed and the batch's (step, micro-batch, rank), so a
cache is reproducible. The sample needs the rest's cumulative mass, so the build forms the teacher's
full logits (``ROWS_PER_CHUNK`` rows at a time): about 3x the plain top K's fused pass, once per
cache; the student's steps cost what they did (the same K columns through the same loss). ``meta.json`` records what the cache was made from (its ``format``, the
teacher's identity, K, the exact slots, temperature, the data's key and the batch plan): a cache
made for anything else, or by an older format, is refused, never overwritten. It is built in a
temporary folder and renamed into place, so a cache that exists is whole.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmkernels.training import data
from llmkernels.training.config import TrainingError
from llmkernels.training.sparse_teacher import sparse_teacher

META = "meta.json"
# 2: top exact_slots(K) + an unbiased sample of the rest (1, unrecorded: the plain top K, biased).
FORMAT = 2
# The share of the K slots that hold the teacher's most likely tokens exactly (the rest: the sample).
EXACT_SHARE = 0.5
ROWS_PER_CHUNK = 512  # the teacher's (rows, V) logits are formed this many rows at a time


def exact_slots(k: int, requested: int | None = None) -> int:
    """The exact slots of K: ``requested`` (``--offline-exact``) where given, else EXACT_SHARE of K."""
    return int(k * EXACT_SHARE) if requested is None else requested


class CachedBatches:
    """``data.Batches`` plus the cached teacher rows of each (step, micro-batch)."""

    def __init__(self, batches: data.Batches, cache: "TopKCache"):
        self.inner, self.cache = batches, cache

    def get(self, step: int, micro: int):
        x, y = self.inner.get(step, micro)
        if step > self.cache.ids.shape[0]:
            raise TrainingError(f"the top-K cache holds {self.cache.ids.shape[0]} steps; step {step} was asked for")
        where = (step - 1, micro, self.inner.rank)
        return x, y, torch.from_numpy(np.array(self.cache.ids[where])), torch.from_numpy(np.array(self.cache.logprobs[where]))


class TopKCache:
    def __init__(self, folder: Path, meta: dict):
        """Opens the arrays; a file missing, unreadable or not of the shape and dtype ``meta`` says
        (a damaged cache: its meta.json is written last, so only a hand can make one) is refused."""
        self.folder = folder
        shape = _shape(meta)
        try:
            self.ids = np.load(folder / "ids.npy", mmap_mode="r")
            self.logprobs = np.load(folder / "logprobs.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise TrainingError(f"the top-K cache in {folder} is damaged ({e}); remove it") from None
        for array, dtype in ((self.ids, np.int32), (self.logprobs, np.float32)):
            if array.shape != shape or array.dtype != dtype:
                raise TrainingError(f"the top-K cache in {folder} is damaged (an array of {array.dtype} {array.shape}, "
                                    f"expected {np.dtype(dtype)} {shape}); remove it")

    def batches(self, batches: data.Batches) -> CachedBatches:
        return CachedBatches(batches, self)


def _shape(meta: dict) -> tuple:
    return tuple(meta[k] for k in ("steps", "grad_accum", "world_size", "batch_size", "seq_len", "k"))


def _meta(teacher, config, corpus, options, world: int) -> dict:
    return {"format": FORMAT, "teacher_identity": teacher.identity, "k": options.offline_topk,
            "exact": exact_slots(options.offline_topk, options.offline_exact), "temperature": options.temperature,
            "corpus_key": corpus.key, "seed": config.seed, "steps": config.steps, "batch_size": config.batch_size,
            "grad_accum": config.grad_accum, "world_size": world, "seq_len": config.context}


def _estimate(model, x, meta: dict, where: tuple) -> tuple:
    """``sparse_teacher`` over the teacher's logits for the batch x, a chunk of rows at a time; the
    uniforms drawn from (seed, step, micro-batch, rank), whatever else the run does."""
    hidden = model._hidden(x).flatten(0, 1)
    seed = np.random.SeedSequence([meta["seed"], *where]).generate_state(1)[0]
    u = torch.rand(hidden.shape[0], generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    parts = [sparse_teacher(model.lm_head(hidden[i:i + ROWS_PER_CHUNK]), meta["k"], meta["exact"], meta["temperature"],
                            u[i:i + ROWS_PER_CHUNK]) for i in range(0, hidden.shape[0], ROWS_PER_CHUNK)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _build(folder: Path, meta: dict, teacher, corpus, quiet: bool) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shape = _shape(meta)
    ids = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=np.int32, shape=shape)
    logprobs = np.lib.format.open_memmap(tmp / "logprobs.npy", mode="w+", dtype=np.float32, shape=shape)
    model = teacher.model
    began = time.perf_counter()
    ranks = [data.Batches(corpus.train, meta["seq_len"], meta["batch_size"], meta["grad_accum"], meta["seed"],
                          meta["world_size"], r) for r in range(meta["world_size"])]
    with torch.no_grad():
        for step in range(1, meta["steps"] + 1):
            for micro in range(meta["grad_accum"]):
                for r, batches in enumerate(ranks):
                    x, _ = batches.get(step, micro)
                    top_ids, top_logprobs = _estimate(model, x, meta, (step, micro, r))
                    ids[step - 1, micro, r] = top_ids.reshape(x.shape + (-1,)).numpy()
                    logprobs[step - 1, micro, r] = top_logprobs.reshape(x.shape + (-1,)).numpy()
            if not quiet and (step % 50 == 0 or step == meta["steps"]):
                print(f"top-K cache: step {step}/{meta['steps']} ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
    ids.flush()
    logprobs.flush()
    del ids, logprobs
    (tmp / META).write_text(json.dumps(meta, indent=1))
    os.rename(tmp, folder)


def build_or_open(folder: Path, teacher, config, corpus, options, quiet: bool) -> TopKCache:
    """The cache for this run: opened when it exists and was made for it, else built (by rank 0;
    other ranks wait for it). A cache made for something else is an error."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    meta = _meta(teacher, config, corpus, options, world)
    if folder.exists() and not (folder / META).exists():  # ours are renamed into place whole, meta.json inside
        raise TrainingError(f"{folder} exists but holds no top-K cache ({META} is missing); remove it or choose another --out")
    if not (folder / META).exists() and rank == 0:
        _build(folder, meta, teacher, corpus, quiet)
    deadline = time.monotonic() + 3600
    while not (folder / META).exists():
        if time.monotonic() > deadline:
            raise TrainingError(f"rank {rank}: gave up waiting for rank 0 to build the top-K cache in {folder}")
        time.sleep(1.0)
    try:
        found = json.loads((folder / META).read_text())
    except (OSError, ValueError) as e:
        raise TrainingError(f"the top-K cache in {folder} is damaged ({META}: {e}); remove it") from None
    if not isinstance(found, dict):
        raise TrainingError(f"the top-K cache in {folder} is damaged ({META} is not an object); remove it")
    if found.get("format") != FORMAT:
        raise TrainingError(f"the top-K cache in {folder} is of format {found.get('format', 1)}, this llmkernels reads "
                            f"format {FORMAT} (an unbiased sample beyond the top tokens); remove it")
    if found != meta:
        differ = sorted(k for k in meta if found.get(k) != meta[k])
        raise TrainingError(f"the top-K cache in {folder} was made for another run (differs in {', '.join(differ)}); "
                            "remove it or choose another --out")
    return TopKCache(folder, meta)
