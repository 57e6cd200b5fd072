"""ops="torch" in the nn modules: PyTorch's own functions give what the llmkernels ops give."""

import pytest
import torch

import llmkernels
from llmkernels import nn


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rotary_dim", [16, 8])
@pytest.mark.parametrize("per_batch", [False, True])
def test_rotary(interleaved, rotary_dim, per_batch):
    q, k = torch.randn(2, 4, 7, 16), torch.randn(2, 2, 7, 16)
    positions = torch.randint(0, 50, (2, 7) if per_batch else (7,))
    ours = nn.RotaryEmbedding(rotary_dim, max_positions=64, interleaved=interleaved)
    base = nn.RotaryEmbedding(rotary_dim, max_positions=64, interleaved=interleaved, ops="torch")
    for given in (positions, None):
        for a, b in zip(base(q, k, given), ours(q, k, given)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_self_cross_and_cached(causal):
    torch.manual_seed(0)
    rotary = nn.RotaryEmbedding(8, max_positions=32)
    ours = nn.Attention(32, n_heads=4, n_kv_heads=2, causal=causal, rotary=rotary, fused_kv=True)
    base = nn.Attention(32, n_heads=4, n_kv_heads=2, causal=causal, rotary=rotary, fused_kv=True, ops="torch")
    base.load_state_dict(ours.state_dict())
    x, context = torch.randn(2, 9, 32), torch.randn(2, 5, 32)
    torch.testing.assert_close(base(x), ours(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base(x, context=context), ours(x, context=context), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        outs = []
        for module in (base, ours):
            cache = nn.KVCache(max_len=9)
            outs.append(torch.cat([module(x[:, :3], kv_cache=cache), module(x[:, 3:5], kv_cache=cache),
                                   module(x[:, 5:6], kv_cache=cache)], 1))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_sinusoidal():
    x = torch.randn(2, 6, 12)
    positions = torch.tensor([3, 4, 5, 9, 10, 11])
    ours = nn.SinusoidalPositionEncoding(12, scale=2.0)
    base = nn.SinusoidalPositionEncoding(12, scale=2.0, max_positions=16, ops="torch")
    torch.testing.assert_close(base(x), ours(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base(x, positions), ours(x, positions), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="max_positions"):
        nn.SinusoidalPositionEncoding(12, ops="torch")(x, positions)


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_losses(softcap):
    torch.manual_seed(0)
    hidden, weight = torch.randn(10, 16), torch.randn(40, 16)
    target = torch.randint(0, 40, (10,))
    target[3] = -100
    options = dict(label_smoothing=0.1, softcap=softcap)
    linear = [nn.LinearCrossEntropyLoss(**options, ops=ops)(hidden, weight, target) for ops in nn.OPS]
    torch.testing.assert_close(linear[1], linear[0], rtol=1e-5, atol=1e-5)
    logits = hidden @ weight.T
    plain = [nn.CrossEntropyLoss(**options, ops=ops)(logits, target) for ops in nn.OPS]
    torch.testing.assert_close(plain[1], plain[0], rtol=1e-5, atol=1e-5)


def test_options_torch_lacks_are_refused():
    with pytest.raises(ValueError, match="softcap"):
        nn.Attention(32, 4, softcap=30.0, ops="torch")
    with pytest.raises(ValueError, match="window"):
        nn.Attention(32, 4, window=(8, 0), ops="torch")
    with pytest.raises(ValueError, match="z_loss"):
        nn.LinearCrossEntropyLoss(z_loss=1e-4, ops="torch")
    with pytest.raises(ValueError, match="ops must be one of"):
        nn.RotaryEmbedding(8, ops="numpy")
    assert llmkernels.nn.OPS == ("llmkernels", "torch")
