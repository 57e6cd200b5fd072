"""Selective recompute (llmkernels.nn.recompute): the norms' outputs and swiglu's output are kept as
recipes, not tensors; the gradients stay bitwise those of the plain saves, and the bytes drop."""

import pytest
import torch

import llmkernels
from llmkernels import nn
from llmkernels.models import GPT, GPTConfig
from llmkernels.nn import recompute
from tests.helpers import assert_close, assert_close_scaled

CONFIG = dict(d_model=48, n_layer=2, n_head=4, n_kv_head=2, vocab_size=97, max_seq_len=32, mlp_hidden=80)


class Saved:
    """Unique saved storages' bytes (parameters excluded)."""

    def __init__(self, params):
        self.params = {p.untyped_storage().data_ptr() for p in params}
        self.seen = {}

    def __call__(self, t):
        s = t.untyped_storage()
        if s.data_ptr() not in self.params:
            self.seen[s.data_ptr()] = s.nbytes()
        return t

    @property
    def bytes(self):
        return sum(self.seen.values())


def _step(model, idx, bf16, plain: bool):
    """Loss, gradients and saved bytes; ``plain``: under foreign saved-tensor hooks, where the
    recipes step aside (every tensor saved as it is)."""
    model.zero_grad(set_to_none=True)
    saved = Saved(model.parameters())
    if plain:
        hooks = torch.autograd.graph.saved_tensors_hooks(saved, lambda t: t)
    else:
        hooks = recompute.measuring(saved)
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(idx, idx.roll(-1, dims=1))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], saved.bytes


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_gpt_gradients_bitwise_and_fewer_bytes(bf16, backend):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG))
    idx = torch.randint(0, CONFIG["vocab_size"], (3, 19))
    with llmkernels.use_backend(backend):
        loss, grads, kept = _step(model, idx, bf16, plain=False)
        loss_plain, grads_plain, kept_plain = _step(model, idx, bf16, plain=True)
    assert torch.equal(loss, loss_plain)
    for got, want in zip(grads, grads_plain):
        assert torch.equal(got, want)
    # Per block: the two norm outputs (d_model columns; under autocast their one bf16 cast each,
    # which q_proj and kv_proj share) and swiglu's (mlp_hidden columns) are gone.
    rows, item = idx.numel(), 2 if bf16 else 4
    per_block = (2 * CONFIG["d_model"] + CONFIG["mlp_hidden"]) * rows * item
    assert kept_plain - kept == CONFIG["n_layer"] * per_block


def test_gpt_matches_torch_ops_with_recipes():
    torch.manual_seed(1)
    ours = GPT(GPTConfig(**CONFIG))
    base = GPT(GPTConfig(**{**CONFIG, "ops": "torch"}))
    base.load_state_dict(ours.state_dict())
    idx = torch.randint(0, CONFIG["vocab_size"], (2, 23))
    results = [_step(m, idx, False, plain=False) for m in (ours, base)]
    assert_close(results[0][0], results[1][0])
    for got, want in zip(results[0][1], results[1][1]):
        assert_close_scaled(got, want)


def test_mlp_keeps_no_activation_output():
    mlp = nn.SwiGLUMLP(16, 40)
    x = torch.randn(5, 16, requires_grad=True)
    saved = Saved(mlp.parameters())
    with recompute.measuring(saved):
        y = mlp(x)
    # x (gate_up's input) and gate_up's output: swiglu's output is a recipe.
    assert saved.bytes == x.numel() * 4 + 5 * 80 * 4
    y.square().sum().backward()
    want = x.detach().clone().requires_grad_()
    gate, up = (want @ mlp.gate_up.weight.T).chunk(2, dim=-1)
    ((torch.nn.functional.silu(gate) * up) @ mlp.down.weight.T).square().sum().backward()
    assert_close(x.grad, want.grad)


def test_in_place_change_of_a_recipe_input_is_refused():
    norm = nn.RMSNorm(8)
    proj = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    h = x * 1.0
    y = norm(h)
    with norm.feeding_projections(y, h) as fed:
        out = proj(fed)
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        out.sum().backward()


def test_feeding_projections_casts_once_under_autocast_and_leaves_torch_alone():
    ours, base = nn.RMSNorm(8), nn.RMSNorm(8, ops="torch")
    h = torch.randn(2, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with ours.feeding_projections(ours(h), h) as fed:
            assert fed.dtype == torch.bfloat16
        y = base(h)
        with base.feeding_projections(y, h) as fed:
            assert fed is y
    with torch.no_grad(), ours.feeding_projections(ours(h), h) as fed:
        assert fed.dtype == torch.float32


def test_steps_aside_under_activation_checkpointing():
    torch.manual_seed(2)
    model = GPT(GPTConfig(**CONFIG))
    idx = torch.randint(0, CONFIG["vocab_size"], (2, 11))
    _, grads, _ = _step(model, idx, False, plain=False)
    model.checkpoint_activations = True
    _, grads_checkpointed, _ = _step(model, idx, False, plain=False)
    for got, want in zip(grads_checkpointed, grads):
        assert torch.equal(got, want)
