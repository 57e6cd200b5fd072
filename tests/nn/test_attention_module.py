"""nn.Attention: self/cross attention, GQA, RoPE, and KV-cache decoding equal to a full pass."""

import torch

import llmkernels


def test_kv_cache_decoding_equals_full_forward():
    rotary = llmkernels.nn.RotaryEmbedding(16, max_positions=64)
    module = llmkernels.nn.Attention(64, n_heads=4, n_kv_heads=2, rotary=rotary)
    x = torch.randn(2, 11, 64)
    full = module(x)
    cache = llmkernels.nn.KVCache()
    steps = [module(x[:, :6], kv_cache=cache)]
    for t in range(6, 11):
        steps.append(module(x[:, t:t + 1], kv_cache=cache))
    assert len(cache) == 11
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_cross_attention_and_gradients():
    module = llmkernels.nn.Attention(32, n_heads=4, causal=True)
    x, context = torch.randn(2, 5, 32, requires_grad=True), torch.randn(2, 9, 32)
    out = module(x, context=context)
    q = module.q_proj(x).view(2, 5, 4, 8).transpose(1, 2)
    k = module.k_proj(context).view(2, 9, 4, 8).transpose(1, 2)
    v = module.v_proj(context).view(2, 9, 4, 8).transpose(1, 2)
    expected = module.o_proj(torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
