"""Checkpoints of an FSDP2 run: every rank writes and reads only its own shards.

torch.distributed.checkpoint (DCP) moves the model's and AdamW's DTensor shards through its
Hugging Face storage: safetensors files whose headers are the index, so loading executes no code
(DCP's default storage pickles its metadata). The folder is sealed and swapped in exactly as a
whole checkpoint is (``checkpoint.install``): ``state.json`` holds the step, the optimizer's
hyper-parameters, ``"sharded": world`` and the SHA-256 of every file, so a damaged or partial
checkpoint is refused. Each rank's CPU RNG state is a file of its own.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from llmkernels.training import checkpoint
from llmkernels.training.config import TrainingError

SHARDS = "shards"
_FLAT = StateDictOptions(flatten_optimizer_state_dict=True)


def _rng_file(rank: int) -> str:
    return f"rng-rank{rank}.safetensors"


def _state_dicts(model, optimizer) -> tuple[dict, dict]:
    """(tensors DCP moves, the optimizer entries that are not tensors). A fresh optimizer's state is
    created here (DCP runs a step at learning rate 0), so a load has every shard to fill."""
    tensors = {f"model.{k}": v for k, v in get_model_state_dict(model, options=_FLAT).items()}
    others = {}
    for k, v in get_optimizer_state_dict(model, optimizer, options=_FLAT).items():
        if isinstance(v, torch.Tensor):
            tensors[f"optim.{k}"] = v
        else:
            others[k] = v
    return tensors, others


def _storage(value: torch.Tensor) -> tuple:
    local = value.to_local() if hasattr(value, "to_local") else value
    return local.untyped_storage().data_ptr(), local.storage_offset(), tuple(local.shape)


def _distinct(tensors: dict) -> tuple[dict, dict]:
    """(one entry per stored tensor, {alias: the key it shares memory with}): a tied weight (the
    embedding and the output projection) is written once; a load copies it back to its aliases."""
    first, distinct, aliases = {}, {}, {}
    for key, value in tensors.items():
        where = _storage(value)
        if where in first:
            aliases[key] = first[where]
        else:
            first[where] = key
            distinct[key] = value
    return distinct, aliases


def _take(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def save(run_dir: str, model, optimizer, state: dict) -> None:
    """Collective: every rank calls it. Rank 0 seals and swaps in the folder all ranks wrote."""
    run, rank = Path(run_dir), dist.get_rank()
    tmp = run / f".checkpoint-tmp-step{state['step']}"  # one name on every rank
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    try:
        tensors, _ = _state_dicts(model, optimizer)
        dcp.save(_distinct(tensors)[0], storage_writer=dcp.HuggingFaceStorageWriter(str(tmp / SHARDS), save_distributed=True))
        save_file({"torch": torch.get_rng_state()}, str(tmp / _rng_file(rank)))
        dist.barrier()
        if rank == 0:
            groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            checkpoint.install(run, tmp, {**state, "optimizer_groups": groups, "sharded": dist.get_world_size()})
    finally:
        dist.barrier()
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)


def load(run_dir: str, model, optimizer) -> dict:
    """Collective: restores this rank's shards of the model and optimizer, and its RNG state."""
    state = checkpoint.read_state(run_dir)
    world = dist.get_world_size()
    if state.get("sharded") != world:
        raise TrainingError(f"cannot resume: the checkpoint was written by {state.get('sharded') or 'one unsharded'} "
                            f"process(es), this run has {world} with --fsdp")
    where = Path(state["folder"])
    try:
        tensors, others = _state_dicts(model, optimizer)
        distinct, aliases = _distinct(tensors)
        dcp.load(distinct, storage_reader=dcp.HuggingFaceStorageReader(str(where / SHARDS)))
        tensors.update({alias: distinct[key] for alias, key in aliases.items()})
        set_model_state_dict(model, _take(tensors, "model."), options=_FLAT)
        set_optimizer_state_dict(model, optimizer, {**_take(tensors, "optim."), **others}, options=_FLAT)
        for group, saved in zip(optimizer.param_groups, state["optimizer_groups"], strict=True):
            group.update(saved)
        torch.set_rng_state(load_file(str(where / _rng_file(dist.get_rank())))["torch"])
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise TrainingError(f"cannot load sharded checkpoint {where}: {str(e).splitlines()[0]}") from None
    return state


def full_state_dict(model) -> dict:
    """The whole model's tensors on every rank (collective): what a run's weight hash is taken over."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def load_whole(where: Path, model) -> None:
    """A sharded checkpoint's weights into an unsharded model in one process (``llmkernels sample``):
    DCP reassembles every tensor from the ranks' shards, no process group needed."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    distinct, _ = _distinct(tensors)
    with warnings.catch_warnings():  # DCP warns that it runs in one process: that is the point here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(distinct, storage_reader=dcp.HuggingFaceStorageReader(str(where / SHARDS)), no_dist=True)
