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
import signal
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from llmkernels.models.dict_config import is_positive_int
from llmkernels.training.config import TrainingError

CHECKPOINT = "checkpoint"
TMP_PREFIX = ".checkpoint-tmp-"
FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
KILL_ENV = "LLMKERNELS_TEST_KILL_AT"  # "<point>@<step>": see _kill_point


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
        _check_group(saved, group)
    for name, fields in state.items():
        p = params[name]
        for field, value in fields.items():
            if field != "step" and (value.shape != p.shape or not value.is_floating_point()):
                raise TrainingError(f"checkpoint optimizer state {name}::{field} is {value.dtype} {tuple(value.shape)}; "
                                    f"the parameter is {tuple(p.shape)}")
    for group, saved in zip(optimizer.param_groups, groups):
        group.update(saved)
    for name, fields in state.items():
        p = params[name]
        optimizer.state[p] = {k: (v.to(p.device) if k != "step" else v) for k, v in fields.items()}


def _cuda_states(rng: dict) -> list:
    """The per-device CUDA generator states in device order (``cuda2`` before ``cuda10``)."""
    devices = sorted(int(k[len("cuda"):]) for k in rng if k.startswith("cuda"))
    return [rng[f"cuda{i}"] for i in devices]


def _kill_point(point: str, step: int) -> None:
    """Tests (tests/training/test_faults.py) die here with SIGKILL, mid-write, as a crash would."""
    if os.environ.get(KILL_ENV) == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, payload: dict) -> None:
    """``path`` holds either its old content or all of ``payload``, never a part (temp file, fsync, replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(payload, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _kind(value):
    """What a JSON value is, for comparing a saved hyper-parameter with the optimizer's own."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return tuple(_kind(v) for v in value)
    return "unknown"


def _check_group(saved: dict, group: dict) -> None:
    """A saved parameter group sets only the optimizer's own fields, each with the kind of value it has
    (a crafted state.json cannot slip an ``lr`` of ``"x"`` or a new field into the optimizer)."""
    for key, value in saved.items():
        if key == "params" or key not in group:
            raise TrainingError(f"checkpoint optimizer group sets unknown field {key!r}")
        if _kind(value) != _kind(group[key]) or _kind(value) == "unknown":
            raise TrainingError(f"checkpoint optimizer field {key!r} is {value!r}; expected a value like {group[key]!r}")


def _check_state(state) -> None:
    """state.json is data read from disk: refuse what ``save`` would never have written."""
    if not isinstance(state, dict):
        raise TrainingError("state.json is not a JSON object")
    if not is_positive_int(state.get("step")):
        raise TrainingError(f"state.json step must be a positive integer; got {state.get('step')!r}")
    groups = state.get("optimizer_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TrainingError("state.json optimizer_groups must be a list of objects")
    sha, sharded = state.get("sha256"), state.get("sharded")
    if sharded is not None and not is_positive_int(sharded):
        raise TrainingError(f"state.json sharded must be a process count; got {sharded!r}")
    if sharded:  # an FSDP checkpoint lists its own files, each inside the checkpoint folder
        if not isinstance(sha, dict) or not sha or not all(isinstance(v, str) for v in sha.values()) or any(
                Path(f).is_absolute() or ".." in Path(f).parts for f in sha):
            raise TrainingError("state.json sha256 must map the checkpoint's own files to their digests")
    elif not isinstance(sha, dict) or not all(isinstance(sha.get(f), str) for f in FILES):
        raise TrainingError(f"state.json sha256 must map each of {', '.join(FILES)} to its digest")


def save(run_dir: str, model, optimizer, state: dict) -> None:
    """Writes the checkpoint beside the current one, then swaps it in: a crash at any point leaves
    a complete checkpoint (the old or the new one) that ``folder`` finds."""
    run = Path(run_dir)
    step = state.get("step", 0)
    for stale in run.glob(TMP_PREFIX + "*"):  # left by a process killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=run))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        _kill_point("model-written", step)
        tensors, groups = _optimizer_tensors(model, optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        save_file(rng, str(tmp / "rng.safetensors"))
        install(run, tmp, {**state, "optimizer_groups": groups})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(run: Path, tmp: Path, state: dict) -> None:
    """Seal the checkpoint written in ``tmp`` (state.json with the SHA-256 of every file in it) and
    swap it in as ``run/checkpoint`` by renames, keeping the previous one until the new one is whole
    (whole checkpoints and FSDP's sharded ones alike)."""
    step = state.get("step", 0)
    files = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
    (tmp / "state.json").write_text(json.dumps({**state, "sha256": {f: _sha256(tmp / f) for f in files}}, indent=1))
    for f in files + ["state.json"]:
        with open(tmp / f, "rb") as handle:
            os.fsync(handle.fileno())
    for folder_path in {(tmp / f).parent for f in files} | {tmp}:
        _fsync_dir(folder_path)
    _kill_point("written", step)
    final, old = run / CHECKPOINT, run / (CHECKPOINT + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    _kill_point("old-moved", step)
    os.rename(tmp, final)
    _fsync_dir(run)
    _kill_point("swapped", step)
    shutil.rmtree(old, ignore_errors=True)


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
        _check_state(state)
        expected = state["sha256"]
        # A sharded (FSDP) checkpoint lists its own files; a whole one must hold FILES.
        for f in expected if state.get("sharded") else FILES:
            if _sha256(where / f) != expected[f]:
                raise TrainingError(f"corrupt checkpoint: {where / f} does not match its recorded SHA-256")
    except TrainingError as e:
        if str(e).startswith("corrupt"):
            raise
        raise TrainingError(f"corrupt checkpoint in {where}: {e}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"corrupt checkpoint in {where}: {type(e).__name__}: {e}") from None
    state["folder"] = str(where)
    return state


def load(run_dir: str, model, optimizer=None) -> dict:
    """Restore model (and optimizer, RNG) in place; returns the saved state (``step``, ...)."""
    state = read_state(run_dir)
    where = Path(state["folder"])
    if state.get("sharded"):
        if optimizer is not None:
            raise TrainingError(f"{run_dir!r} was trained with --fsdp on {state['sharded']} processes: resume it the same way")
        from llmkernels.training import sharded_checkpoint

        try:
            sharded_checkpoint.load_whole(where, model)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise TrainingError(f"cannot load sharded checkpoint {where}: {str(e).splitlines()[0]}") from None
        return state
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
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as e:
        raise TrainingError(f"cannot load checkpoint {where}: {str(e).splitlines()[0]}") from None
    return state
