"""nn.RMSNorm: the fused op and PyTorch's own path agree; state dicts match torch.nn.RMSNorm's."""

import pytest
import torch

import llmkernels
from llmkernels import nn
from tests.helpers import CastCounter


@pytest.mark.parametrize("with_residual", [False, True])
def test_both_ops_modes_agree_forward_and_backward(with_residual):
    ours, base = nn.RMSNorm(40, eps=1e-5), nn.RMSNorm(40, eps=1e-5, ops="torch")
    with torch.no_grad():
        ours.weight.copy_(torch.randn(40))
    base.load_state_dict(ours.state_dict())
    x = torch.randn(3, 7, 40, requires_grad=True)
    r = torch.randn(3, 7, 40, requires_grad=True) if with_residual else None
    grads, outs = [], []
    for module in (ours, base):
        out = module(x, r) if with_residual else module(x)
        y, h = out if with_residual else (out, None)
        loss = (y * torch.linspace(-1, 1, 40)).sum() + (h.square().sum() if with_residual else 0.0)
        leaves = [x, module.weight] + ([r] if with_residual else [])
        grads.append(torch.autograd.grad(loss, leaves))
        outs.append(out if with_residual else (out,))
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_state_dict_matches_torch_rms_norm():
    ours, theirs = nn.RMSNorm(16), torch.nn.RMSNorm(16)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(16))
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 16)
    theirs.eps = ours.eps
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.RMSNorm(0)
    with pytest.raises(ValueError, match="ops must be one of"):
        nn.RMSNorm(8, ops="numpy")
    assert nn.RMSNorm((8,)).weight.shape == (8,)


def test_under_bf16_autocast_keeps_a_float32_weight():
    norm = nn.RMSNorm(24)
    x = torch.randn(4, 24, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and norm.weight.grad.dtype == torch.float32
    with llmkernels.use_backend("reference"):
        want = llmkernels.rms_norm(x.detach(), norm.weight.detach())
    torch.testing.assert_close(y, want)


def test_mixed_dtypes_promote_as_the_torch_path_does():
    ours, base = nn.RMSNorm(24), nn.RMSNorm(24, ops="torch")
    x, stream = torch.randn(3, 24, dtype=torch.bfloat16), torch.randn(3, 24)
    (y, h), (want_y, want_h) = ours(x, stream), base(x, stream)
    assert h.dtype == want_h.dtype == torch.float32 and y.dtype == want_y.dtype
    torch.testing.assert_close(h, want_h)
    torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-5)


def test_out_dtype_in_both_ops_modes_and_projection_dtype():
    ours, base = nn.RMSNorm(24), nn.RMSNorm(24, ops="torch")
    x, stream = torch.randn(3, 24, dtype=torch.bfloat16), torch.randn(3, 24)
    (y, h), (want_y, want_h) = ours(x, stream, out_dtype=torch.bfloat16), base(x, stream, out_dtype=torch.bfloat16)
    assert y.dtype == want_y.dtype == torch.bfloat16 and h.dtype == want_h.dtype == torch.float32
    torch.testing.assert_close(y, want_y)
    assert ours(stream, out_dtype=torch.float16).dtype == base(stream, out_dtype=torch.float16).dtype == torch.float16
    assert ours.projection_dtype(stream) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours.projection_dtype(stream) == torch.bfloat16
        assert base.projection_dtype(stream) is None  # the baseline lets each projection cast
        assert ours.projection_dtype(torch.ones(3, dtype=torch.int64)) is None


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
def test_bf16_gpt_step_casts_no_activation_of_the_stream():
    # The norms read bf16 sublayer outputs beside the float32 stream and write bf16 y for the
    # projections and the loss in one pass, forward and backward: no cast of a stream-sized tensor.
    from llmkernels.models import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=48, n_layer=2, n_head=4, n_kv_head=2, vocab_size=97, max_seq_len=32, mlp_hidden=80))
    idx = torch.randint(0, 97, (3, 19))
    counter = CastCounter(3 * 19 * 48)
    with counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(idx, idx.roll(-1, dims=1))
        loss.backward()
    assert torch.isfinite(loss) and counter.casts == 0
