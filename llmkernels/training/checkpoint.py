"""Checkpoints: safetensors and JSON only (no pickle), written atomically.

A checkpoint is the folder ``<run>/checkpoint/``: ``model.safetensors``, ``optimizer.safetensors``
(AdamW moments by parameter name), ``rng.safetensors`` and ``state.json`` (step, optimizer
hyper-parameters, and a SHA-256 of each file so that a damaged checkpoint is refused rather than
half-loaded). It is written to a temporary folder, then swapped in by renames; a crash between the
two renames leaves ``checkpoint.old/``, which the loader falls back to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from llmkernels.training.config import TrainingError

CHECKPOINT = "checkpoint"
FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _optimizer_tensors(model, optimizer) -> tuple[dict, list]:
    names = {id(p): n for n, p in model.named_parameters()}
    tensors, groups = {}, []
    for group in optimizer.param_groups:
        groups.append({k: v for k, v in group.items() if k != "params"})
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                tensors[f"{names[id(p)]}::{key}"] = value.detach().contiguous()
    return tensors, groups


def _load_optimizer(model, optimizer, tensors: dict, groups: list) -> None:
    params = dict(model.named_parameters())
    state = {}
    for key, value in tensors.items():
        name, field = key.split("::")
        if name not in params:
            raise TrainingError(f"checkpoint optimizer state names unknown parameter {name!r}")
        state.setdefault(name, {})[field] = value
    if len(groups) != len(optimizer.param_groups):
        raise TrainingError("checkpoint optimizer has a different number of parameter groups")
    for group, saved in zip(optimizer.param_groups, groups):
        group.update(saved)
    for name, fields in state.items():
        p = params[name]
        optimizer.state[p] = {k: (v.to(p.device) if k != "step" else v) for k, v in fields.items()}


def _cuda_states(rng: dict) -> list:
    """The per-device CUDA generator states in device order (``cuda2`` before ``cuda10``)."""
    devices = sorted(int(k[len("cuda"):]) for k in rng if k.startswith("cuda"))
    return [rng[f"cuda{i}"] for i in devices]


def save(run_dir: str, model, optimizer, state: dict) -> None:
    run = Path(run_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-tmp-", dir=run))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, groups = _optimizer_tensors(model, optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {**state, "optimizer_groups": groups, "sha256": {f: _sha256(tmp / f) for f in FILES}}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        final, old = run / CHECKPOINT, run / (CHECKPOINT + ".old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def folder(run_dir: str) -> Path | None:
    run = Path(run_dir)
    for candidate in (run / CHECKPOINT, run / (CHECKPOINT + ".old")):
        if (candidate / "state.json").exists():
            return candidate
    return None


def read_state(run_dir: str) -> dict:
    where = folder(run_dir)
    if where is None:
        raise TrainingError(f"no checkpoint in {run_dir!r} to resume from")
    try:
        state = json.loads((where / "state.json").read_text())
        expected = state["sha256"]
        for f in FILES:
            if _sha256(where / f) != expected[f]:
                raise TrainingError(f"corrupt checkpoint: {where / f} does not match its recorded SHA-256")
    except TrainingError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"corrupt checkpoint in {where}: {type(e).__name__}: {e}") from None
    state["folder"] = str(where)
    return state


def load(run_dir: str, model, optimizer=None) -> dict:
    """Restore model (and optimizer, RNG) in place; returns the saved state (``step``, ...)."""
    state = read_state(run_dir)
    where = Path(state["folder"])
    try:
        missing, unexpected = load_model(model, str(where / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise TrainingError(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
        if optimizer is not None:
            _load_optimizer(model, optimizer, load_file(str(where / "optimizer.safetensors")), state["optimizer_groups"])
            rng = load_file(str(where / "rng.safetensors"))
            torch.set_rng_state(rng["torch"])
            if torch.cuda.is_available():
                states = _cuda_states(rng)
                if len(states) == torch.cuda.device_count():
                    torch.cuda.set_rng_state_all(states)
    except TrainingError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise TrainingError(f"cannot load checkpoint {where}: {str(e).splitlines()[0]}") from None
    return state
