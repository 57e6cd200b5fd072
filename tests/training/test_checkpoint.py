"""Checkpoint files on their own: CUDA generator order, and files that must be refused."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmkernels.models import GPTConfig
from llmkernels.training import checkpoint
from llmkernels.training.config import TrainingError, build
from llmkernels.training.loop import resolve_config


def _model_and_optimizer():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_cuda_rng_states_come_back_in_device_order(tmp_path, monkeypatch):
    # Twelve devices: sorted as strings, cuda10 and cuda11 would land between cuda1 and cuda2.
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(12)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(states))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    model, optimizer = _model_and_optimizer()
    checkpoint.save(str(tmp_path), model, optimizer, {"step": 1})
    checkpoint.load(str(tmp_path), model, optimizer)
    assert [int(s[0]) for s in restored] == list(range(12))


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _saved(tmp_path):
    model, optimizer = _model_and_optimizer()
    checkpoint.save(str(tmp_path), model, optimizer, {"step": 3})
    return model, optimizer, tmp_path / "checkpoint"


def _reseal(folder):
    """Record the files' current digests, as an attacker who edits the checkpoint would."""
    state = json.loads((folder / "state.json").read_text())
    state["sha256"] = {f: checkpoint._sha256(folder / f) for f in checkpoint.FILES}
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("name", checkpoint.FILES)
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_in_place_of_a_checkpoint_file_is_refused_unexecuted(tmp_path, name, writer):
    model, optimizer, folder = _saved(tmp_path)
    marker = tmp_path / "payload-ran"
    payload = _Payload(str(marker))
    if writer == "pickle":
        (folder / name).write_bytes(pickle.dumps(payload))
    else:
        torch.save({"weight": payload}, folder / name)
    _reseal(folder)
    with pytest.raises(TrainingError, match="cannot load checkpoint"):
        checkpoint.load(str(tmp_path), model, optimizer)
    assert not marker.exists()


@pytest.mark.parametrize("field, value, message", [
    ("step", "3", "step must be a positive integer"),
    ("step", -1, "step must be a positive integer"),
    ("sha256", "abc", "sha256 must map"),
    ("optimizer_groups", {"lr": 1}, "optimizer_groups must be a list"),
])
def test_a_crafted_state_json_is_refused(tmp_path, field, value, message):
    model, optimizer, folder = _saved(tmp_path)
    state = json.loads((folder / "state.json").read_text())
    state[field] = value
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(TrainingError, match=f"corrupt checkpoint in .*{message}"):
        checkpoint.load(str(tmp_path), model, optimizer)


@pytest.mark.parametrize("change, message", [
    ({"lr": "0.1"}, "optimizer field 'lr' is '0.1'"),
    ({"betas": [0.9]}, "optimizer field 'betas'"),
    ({"foreach": {"x": 1}}, "optimizer field 'foreach'"),
    ({"__class__": 1}, "unknown field '__class__'"),
])
def test_crafted_optimizer_hyper_parameters_are_refused(tmp_path, change, message):
    model, optimizer, folder = _saved(tmp_path)
    state = json.loads((folder / "state.json").read_text())
    state["optimizer_groups"][0].update(change)
    (folder / "state.json").write_text(json.dumps(state))
    before = dict(optimizer.param_groups[0])
    with pytest.raises(TrainingError, match=message):
        checkpoint.load(str(tmp_path), model, optimizer)
    assert optimizer.param_groups[0] == before  # nothing half-applied


def test_optimizer_moments_of_the_wrong_shape_are_refused(tmp_path):
    model, optimizer, folder = _saved(tmp_path)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    tensors["weight::exp_avg"] = torch.zeros(7)
    save_file(tensors, str(folder / "optimizer.safetensors"))
    _reseal(folder)
    with pytest.raises(TrainingError, match=r"weight::exp_avg is torch.float32 \(7,\); the parameter is \(2, 3\)"):
        checkpoint.load(str(tmp_path), model, optimizer)


def _run_dir(tmp_path, train=None, model=None):
    config = build("tiny", tokenizer="bytes", seq_len=32)
    payload = {"train": {**config.to_dict(), **(train or {})}, "model": {**config.model_config(300).to_dict(), **(model or {})}}
    (tmp_path / "config.json").write_text(json.dumps(payload))
    return str(tmp_path)


@pytest.mark.parametrize("train, message", [
    ({"payload": "x"}, r"TrainConfig has unknown fields \['payload'\]"),
    ({"lr": "0.1"}, "TrainConfig.lr must be float; got '0.1'"),
    ({"steps": 2.5}, "TrainConfig.steps must be int; got 2.5"),
    ({"bf16": "yes"}, "TrainConfig.bf16 must be bool"),
    ({"seed": None}, "TrainConfig.seed must be int; got None"),
    ({"model": {"rope_base": "x"}}, "GPTConfig.rope_base must be float"),
    ({"model": {"d_model": True}}, "GPTConfig.d_model must be int"),
])
def test_a_crafted_run_config_is_refused(tmp_path, train, message):
    with pytest.raises(TrainingError, match=message):
        resolve_config({}, _run_dir(tmp_path, train), resume=True)


def test_a_crafted_model_config_is_refused():
    with pytest.raises(ValueError, match="GPTConfig.n_layer must be int; got '2'"):
        GPTConfig.from_dict({"n_layer": "2"})
    with pytest.raises(ValueError, match=r"unknown fields \['evil'\]"):
        GPTConfig.from_dict({"evil": 1})
