"""SwiGLUMLP: the fused op and PyTorch's F.silu(gate) * up agree; the GPT's parameter names."""

import pytest
import torch

import llmkernels
from llmkernels import nn
from llmkernels.models import GPT, GPTConfig
from tests.helpers import assert_close


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("backend", ["reference", "cpp", "auto"])
def test_ops_modes_agree_forward_and_gradients(bias, backend):
    if backend != "auto" and backend not in llmkernels.available_backends("cpu", "swiglu"):
        pytest.skip(f"{backend} not present")
    ours = nn.SwiGLUMLP(24, 40, bias=bias)
    base = nn.SwiGLUMLP(24, 40, bias=bias, ops="torch")
    base.load_state_dict(ours.state_dict())
    x = torch.randn(3, 7, 24, requires_grad=True)
    grads = []
    for module in (base, ours):
        x.grad = None
        with llmkernels.use_backend(backend):
            y = module(x)
        y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
        grads.append([y.detach(), x.grad.clone()] + [p.grad.clone() for p in module.parameters()])
    for got, want in zip(grads[1], grads[0]):
        assert_close(got, want)


def test_state_dict_is_the_gpts():
    mlp = nn.SwiGLUMLP(16, 48)
    assert set(mlp.state_dict()) == {"gate_up.weight", "down.weight"}
    assert mlp.gate_up.weight.shape == (96, 16) and mlp.down.weight.shape == (16, 48)
    assert set(nn.SwiGLUMLP(16, 48, bias=True).state_dict()) == {"gate_up.weight", "gate_up.bias", "down.weight", "down.bias"}
    # The GPT's MLP is this module, with the layout its checkpoints have always had: [gate | up].
    config = GPTConfig(d_model=16, n_layer=1, n_head=2, n_kv_head=2, vocab_size=32, max_seq_len=8, mlp_hidden=40)
    gpt_mlp = GPT(config).blocks[0].mlp
    assert isinstance(gpt_mlp, nn.SwiGLUMLP)
    x = torch.randn(2, 5, 16)
    gate, up = (x @ gpt_mlp.gate_up.weight.T).chunk(2, dim=-1)
    assert_close(gpt_mlp(x), (torch.nn.functional.silu(gate) * up) @ gpt_mlp.down.weight.T)


def test_bf16_autocast_and_bad_ops():
    mlp = nn.SwiGLUMLP(16, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mlp(torch.randn(2, 3, 16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="ops must be one of"):
        nn.SwiGLUMLP(16, 32, ops="jax")
