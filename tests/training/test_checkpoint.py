"""Checkpoint files on their own: CUDA generator order, and files that must be refused."""

import torch

from llmkernels.training import checkpoint


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
