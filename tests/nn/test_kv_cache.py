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


def test_reordering_at_every_step_keeps_each_rows_history():
    """Beam search reorders a preallocated cache after each append (into its second buffers)."""
    torch.manual_seed(0)
    growing, fixed = llmkernels.nn.KVCache(), llmkernels.nn.KVCache(max_len=8)
    for step in range(6):
        k, v = torch.randn(4, 2, 1, 8), torch.randn(4, 2, 1, 8)
        growing.append(k, v)
        fixed.append(k, v)
        index = torch.randint(0, 4, (4,))
        growing.reorder(index)
        fixed.reorder(index)
        assert torch.equal(growing.k, fixed.k) and torch.equal(growing.v, fixed.v) and len(fixed) == step + 1
    fixed.reorder(torch.tensor([3, 0]))  # a batch of another size: fresh buffers
    assert torch.equal(fixed.k, growing.k[[3, 0]]) and len(fixed) == 6
    fixed.append(torch.zeros(2, 2, 1, 8), torch.zeros(2, 2, 1, 8))
    assert fixed.k.shape == (2, 2, 7, 8)
