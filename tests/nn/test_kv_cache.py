"""nn.KVCache: the growing and the preallocated storage agree, and the cache refuses what it cannot hold."""

import pytest
import torch

import llmkernels


def _decode(module, x, cache, prefix=4):
    steps = [module(x[:, :prefix], kv_cache=cache)]
    for t in range(prefix, x.shape[1]):
        steps.append(module(x[:, t:t + 1], kv_cache=cache))
    return torch.cat(steps, 1)


@pytest.mark.parametrize("fused_kv", [False, True])
def test_preallocated_cache_decodes_like_the_growing_one(fused_kv):
    torch.manual_seed(0)
    rotary = llmkernels.nn.RotaryEmbedding(8, max_positions=32)
    module = llmkernels.nn.Attention(32, n_heads=4, n_kv_heads=2, rotary=rotary, fused_kv=fused_kv)
    x = torch.randn(3, 9, 32)
    with torch.no_grad():
        full = module(x)
        growing, fixed = llmkernels.nn.KVCache(), llmkernels.nn.KVCache(max_len=16)
        torch.testing.assert_close(_decode(module, x, growing), full, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(_decode(module, x, fixed), full, rtol=1e-5, atol=1e-5)
    assert len(growing) == len(fixed) == 9
    assert torch.equal(growing.k, fixed.k) and torch.equal(growing.v, fixed.v)
    assert fixed.k.shape == (3, 2, 9, 8)


def test_growing_cache_passes_gradients():
    module = llmkernels.nn.Attention(16, n_heads=2)
    x = torch.randn(1, 5, 16, requires_grad=True)
    _decode(module, x, llmkernels.nn.KVCache(), prefix=2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad[:, 0].abs().sum() > 0


def test_cache_takes_the_dtype_of_its_first_keys():
    cache = llmkernels.nn.KVCache(max_len=4)
    k = torch.randn(1, 2, 1, 8, dtype=torch.bfloat16)
    keys, values = cache.append(k, k.clone())
    assert keys.dtype == values.dtype == torch.bfloat16 and torch.equal(keys, k)


def test_cache_refuses_overflow_and_bad_shapes():
    cache = llmkernels.nn.KVCache(max_len=3)
    cache.append(torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 2, 8))
    with pytest.raises(ValueError, match="max_len 3"):
        cache.append(torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 2, 8))
    assert len(cache) == 2
    with pytest.raises(ValueError, match="k and v"):
        cache.append(torch.zeros(1, 2, 1, 8), torch.zeros(1, 3, 1, 8))
    with pytest.raises(ValueError, match="max_len"):
        llmkernels.nn.KVCache(max_len=0)
