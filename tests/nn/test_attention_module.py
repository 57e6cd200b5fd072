"""nn.Attention: self/cross attention, GQA, RoPE, and KV-cache decoding equal to a full pass."""

import pytest
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



@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_key_padding_mask_matches_the_torch_path_and_ignores_padded_keys(causal, cross):
    torch.manual_seed(3)
    fused = llmkernels.nn.Attention(32, 4, n_kv_heads=2, causal=causal)
    baseline = llmkernels.nn.Attention(32, 4, n_kv_heads=2, causal=causal, ops="torch")
    baseline.load_state_dict(fused.state_dict())
    x = torch.randn(3, 6, 32)
    context = torch.randn(3, 5, 32) if cross else None
    mask = torch.ones(3, 5 if cross else 6, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, :] = False  # a row that sees no key: zeros on both paths, never NaN
    ours = fused(x, context, key_padding_mask=mask)
    theirs = baseline(x, context, key_padding_mask=mask)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(theirs).all()
    # Moving a padded key (batch 1, position 4) changes nothing.
    if cross:
        moved_context = context.clone()
        moved_context[1, 4] += 10.0
        torch.testing.assert_close(fused(x, moved_context, key_padding_mask=mask)[1], ours[1])
    (ours.sum() + theirs.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in baseline.parameters())


@pytest.mark.parametrize("ops", ["llmkernels", "torch"])
def test_a_context_row_shared_by_consecutive_rows_equals_it_copied_per_row(ops):
    """Beam search: 3 rows (beams) per sentence attend to the sentence's one row of keys/values."""
    torch.manual_seed(0)
    module = llmkernels.nn.Attention(32, n_heads=4, n_kv_heads=2, causal=False, fused_kv=True, ops=ops)
    context, x = torch.randn(2, 7, 32), torch.randn(6, 2, 32)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        copied = module(x, context=context.repeat_interleave(3, 0), key_padding_mask=mask.repeat_interleave(3, 0))
        shared = module(x, context=module.context_keys_values(context), key_padding_mask=mask)
    torch.testing.assert_close(shared, copied, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of it"):
        module(torch.randn(5, 1, 32), context=module.context_keys_values(context))
